import { FedflareError } from "../../src/errors.ts";

/** Every refusal of the aggregator: its HTTP status and a stable code. */
export const AGGREGATOR_ERRORS = {
  config_invalid: 422,
  federation_exists: 409,
  federation_not_found: 404,
  federation_finished: 409,
  round_open: 409,
  initial_missing: 409,
  initial_exists: 409,
  initial_not_needed: 409,
  round_not_found: 404,
  round_closed: 409,
  round_short: 409,
  version_not_found: 404,
  client_unknown: 403,
  client_not_sampled: 403,
  upload_conflict: 409,
  nonce_reused: 409,
  body_too_large: 413,
  safetensors_invalid: 400,
  header_too_large: 422,
  metadata_invalid: 422,
  tensor_mismatch: 422,
  non_finite: 422,
  update_invalid: 422,
} as const;

export type AggregatorErrorCode = keyof typeof AGGREGATOR_ERRORS;

export class AggregatorError extends FedflareError<AggregatorErrorCode> {
  get status(): number {
    return AGGREGATOR_ERRORS[this.code];
  }
}

/** Errors as data: Workers RPC keeps only an error's message, so results carry status and code. */
export type Result<T> = { ok: true; value: T } | { ok: false; error: { status: number; code: string; message: string } };

function refusal(e: unknown): Result<never> {
  if (e instanceof AggregatorError) return { ok: false, error: { status: e.status, code: e.code, message: e.message } };
  throw e;
}

export function attempt<T>(run: () => T): Result<T> {
  try {
    return { ok: true, value: run() };
  } catch (e) {
    return refusal(e);
  }
}

export async function attemptAsync<T>(run: () => Promise<T>): Promise<Result<T>> {
  try {
    return { ok: true, value: await run() };
  } catch (e) {
    return refusal(e);
  }
}
