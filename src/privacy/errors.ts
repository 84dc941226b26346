import { FedflareError } from "../errors.ts";

export type PrivacyErrorCode =
  /** A privacy parameter out of its range (sample rate, noise multiplier, steps, δ, ε, orders); the message names it. */
  | "privacy_invalid"
  /** No noise multiplier in the searched range reaches the target ε. */
  | "privacy_unreachable"
  /** The accountant's series lost its floating-point precision at these parameters. */
  | "accountant_unstable";

/** A differential-privacy failure: the accountant's inputs or its budget. */
export class PrivacyError extends FedflareError<PrivacyErrorCode> {}
