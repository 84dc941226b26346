import { FedflareError } from "../errors.ts";

export type SecAggErrorCode =
  /** A parameter or message out of shape (sizes, ranges, graph degree, threshold); the message names it. */
  | "secagg_invalid"
  /** Fewer clients survived a phase than the threshold needs: the round cannot be unmasked. */
  | "below_threshold"
  /** A request the protocol forbids: both a peer's self-mask share and its key share, or a share from a non-neighbour. */
  | "protocol_violation"
  /** A ciphertext that does not decrypt under the pair's key and context (tampered or misrouted). */
  | "decrypt_failed";

/** A secure-aggregation failure, with its reason for the round's record. */
export class SecAggError extends FedflareError<SecAggErrorCode> {}
