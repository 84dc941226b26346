import { FedflareError } from "../../src/errors.ts";
import { FlError } from "../../src/fl/errors.ts";
import { UPDATE_METADATA_BYTES } from "../../src/fl/flat-tensors.ts";
import { MethodError } from "../../src/fl/methods/errors.ts";
import { METRICS_LIMITS } from "../../src/protocol/federation.ts";
import { SafetensorsError } from "../../src/protocol/safetensors.ts";
import { SecAggMessageError } from "../../src/protocol/secure-aggregation.ts";
import { SecAggError } from "../../src/secagg/errors.ts";

/** Every refusal of the aggregator: its HTTP status and a stable code. */
export const AGGREGATOR_ERRORS = {
  config_invalid: 422,
  federation_exists: 409,
  federation_not_found: 404,
  federation_finished: 409,
  privacy_budget_spent: 409,
  round_open: 409,
  initial_missing: 409,
  initial_exists: 409,
  initial_not_needed: 409,
  round_not_found: 404,
  round_closed: 409,
  round_short: 409,
  version_not_found: 404,
  /** A version view asked with a parameter it does not read. */
  view_params_invalid: 400,
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
  /** Secure aggregation: a message for a phase that is not the round's current one. */
  phase_closed: 409,
  /** Secure aggregation: a client that missed an earlier phase, or a round that is not secure. */
  not_in_phase: 403,
  /** Secure aggregation: a key-phase message or masked input out of shape. */
  message_invalid: 422,
  /** A client's progress heartbeat sooner than the least interval (round-progress.ts). */
  too_frequent: 429,
  /** Sharded aggregation: a call for a federation's shard that reached its root object, or the reverse. */
  misdirected: 421,
  /** Sharded aggregation: a shard object that could not be sealed or read at a round's end; the round stays open. */
  shard_unavailable: 503,
  /** Federated evaluation: a report of a version nobody asked the clients to evaluate. */
  evaluation_not_requested: 409,
  /** Federated evaluation: a report of, or a request for, a version whose evaluation was folded past keepRoundDetail newer versions. */
  evaluation_closed: 409,
} as const;

export type AggregatorErrorCode = keyof typeof AGGREGATOR_ERRORS;

export class AggregatorError extends FedflareError<AggregatorErrorCode> {
  get status(): number {
    return AGGREGATOR_ERRORS[this.code];
  }
}

/**
 * Runs `fn`, answering a refusal by the wire formats, the tensors, the metadata or the method as the
 * aggregator's error (status and code) about `what`: the one translation every stage of an upload,
 * a version read and a view share.
 */
export function refusing<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof AggregatorError) throw e;
    if (e instanceof SafetensorsError && e.code === "header_too_large")
      throw new AggregatorError(
        "header_too_large",
        `${what}: ${e.message}: a header holds its tensors' entries and at most ${UPDATE_METADATA_BYTES} bytes of metadata ` +
          `(metrics of at most ${METRICS_LIMITS.jsonBytes} characters)`,
      );
    if (e instanceof SafetensorsError) throw new AggregatorError("safetensors_invalid", `${what}: ${e.message} (${e.code})`);
    if (e instanceof FlError) throw new AggregatorError(e.code === "non_finite" ? "non_finite" : "tensor_mismatch", e.message);
    if (e instanceof MethodError)
      throw new AggregatorError(
        e.code === "update_invalid" ? "update_invalid" : e.code === "view_invalid" ? "version_not_found" : "config_invalid",
        e.message,
      );
    if (e instanceof SecAggMessageError || e instanceof SecAggError) throw new AggregatorError("message_invalid", `${what}: ${e.message}`);
    if (e instanceof FedflareError && e.code === "metadata_invalid") throw new AggregatorError("metadata_invalid", e.message);
    throw e;
  }
}

/** Runs `fn`, answering any fedflare error as `config_invalid` (a federation being created), prefixed by `what`. */
export function refusingConfig<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof FedflareError && !(e instanceof AggregatorError))
      throw new AggregatorError("config_invalid", what ? `${what}: ${e.message}` : e.message, { cause: e });
    throw e;
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
