// What one request may ask of the endpoint, and the single check of a request's demand against it: each
// cap is refused before any of its work is done, with a message naming the cap and its value.
import type { Demand } from "../../src/engine/endpoint.ts";
import { MAX_HIDDEN_STATE_BYTES, MAX_SCORED_ROWS } from "../../src/fl/client/endpoint-scores.ts";

export interface EndpointLimits {
  /** Rows (prompts) in one request, on every route; at least what clients send (MAX_SCORED_ROWS). */
  maxRows: number;
  /** Tokens a completion may generate (max_tokens). */
  maxTokens: number;
  /** The hidden states an answer may hold before encoding: rows x positions x hidden x 4 bytes. */
  maxHiddenStateBytes: number;
  /** Values a request's perturbation generates: (terms + 1) x trained values, or z's length x the soft prompt's values. */
  maxPerturbationWork: number;
  /** Echoed prompt log-prob entries an answer may hold: positions x (1 + logprobs), about 30 bytes of JSON each. */
  maxEchoEntries: number;
  /** Request body bytes. */
  maxBodyBytes: number;
  /**
   * ORT sessions kept for hidden states and scoring (per cut layer, per `trains`, per soft-prompt shape); the
   * least recently used is released.
   */
  maxSessions: number;
  /** Requests computing at once; more wait in the queue. */
  maxConcurrent: number;
  /** Requests waiting for a computing slot; more are refused with 429. */
  maxQueued: number;
  /** A request's time, waiting included, before it is answered 503 (still queued) or 504 (computing). */
  timeoutMs: number;
}

export const ENDPOINT_LIMITS: Readonly<EndpointLimits> = Object.freeze({
  maxRows: MAX_SCORED_ROWS,
  maxTokens: 256,
  maxHiddenStateBytes: MAX_HIDDEN_STATE_BYTES,
  // About 20 s of seeded Gaussian draws (~3.4M values/s on one core), which block the event loop: enough
  // for a zeroth-order model of k = 4096 seed terms on a rank-4 LoRA of q, v in fedflare-mail-4m (4097 x 14336).
  maxPerturbationWork: 1 << 26,
  maxEchoEntries: 1 << 20,
  maxBodyBytes: 8 << 20,
  maxSessions: 4,
  // The default batch (maxBatch 8): one-prompt requests computing together fill one forward pass.
  maxConcurrent: 8,
  maxQueued: 16,
  timeoutMs: 120_000,
});

/** The defaults with `overrides`, checked: positive integers, and a row cap clients' requests fit in. */
export function endpointLimits(overrides: Partial<EndpointLimits> = {}): EndpointLimits {
  const limits = { ...ENDPOINT_LIMITS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    const least = name === "maxQueued" ? 0 : 1;
    if (!Number.isSafeInteger(value) || value < least)
      throw new RangeError(`endpoint limit ${name} must be an integer >= ${least}, got ${value}`);
  }
  if (limits.maxRows < MAX_SCORED_ROWS)
    throw new RangeError(
      `endpoint limit maxRows must be at least ${MAX_SCORED_ROWS}: ` +
        `fedflare's clients send up to that many rows a scoring request, got ${limits.maxRows}`,
    );
  return limits;
}

export interface Refusal {
  status: 400 | 413;
  code: string;
  message: string;
  param: string | null;
}

/** A refusal found while measuring, before the measure's own work (tokenizing) is done. */
export class Refused extends Error {
  readonly refusal: Refusal;
  constructor(refusal: Refusal) {
    super(refusal.message);
    this.refusal = refusal;
  }
}

/** The first limit `d` goes over, or null; `maxPositions` is the model's max_position_embeddings. */
export function refusal(d: Demand, limits: EndpointLimits, maxPositions: number): Refusal | null {
  const rows = d.rows.length;
  if (rows > limits.maxRows)
    return {
      status: 413,
      code: "too_many_rows",
      param: d.rowsField,
      message: `${d.rowsField} has ${rows} rows: this endpoint takes at most ${limits.maxRows} a request (maxRows); split the request`,
    };
  if (d.maxTokens !== undefined && d.maxTokens > limits.maxTokens)
    return {
      status: 400,
      code: "max_tokens_too_large",
      param: "max_tokens",
      message: `max_tokens is ${d.maxTokens}: this endpoint generates at most ${limits.maxTokens} tokens a completion (maxTokens)`,
    };
  const extra = d.extraPositions?.count ?? 0;
  const longest = d.rows.reduce((best, n, i) => (n > d.rows[best]! ? i : best), 0);
  const positions = (d.rows[longest] ?? 0) + extra;
  if (positions > maxPositions) {
    const parts = extra ? ` (${d.rows[longest]} tokens + ${extra} ${d.extraPositions!.what})` : "";
    return {
      status: 400,
      code: "context_length_exceeded",
      param: d.rowsField,
      message: `${d.rowsField}[${longest}] needs ${positions} positions${parts}: this model's max_position_embeddings is ${maxPositions}`,
    };
  }
  if (d.hiddenStates) {
    const bytes = rows * (d.rows[longest] ?? 0) * d.hiddenStates.hidden * 4;
    if (bytes > limits.maxHiddenStateBytes)
      return {
        status: 413,
        code: "hidden_states_too_large",
        param: d.rowsField,
        message:
          `the hidden states asked for are ${bytes} bytes (${rows} rows x ${d.rows[longest]} positions x ` +
          `${d.hiddenStates.hidden} hidden x 4): this endpoint answers at most ${limits.maxHiddenStateBytes} (maxHiddenStateBytes); ` +
          `send fewer or shorter rows a request`,
      };
  }
  if (d.echoEntries !== undefined && d.echoEntries > limits.maxEchoEntries)
    return {
      status: 413,
      code: "answer_too_large",
      param: "echo",
      message:
        `the echoed log-probs would be ${d.echoEntries} entries (prompt positions x (1 + logprobs)): ` +
        `this endpoint answers at most ${limits.maxEchoEntries} a request (maxEchoEntries); send fewer or shorter prompts, ` +
        `or fewer logprobs`,
    };
  if (d.perturbation && d.perturbation.values > limits.maxPerturbationWork)
    return {
      status: 413,
      code: "perturbation_too_large",
      param: null,
      message:
        `the perturbation needs ${d.perturbation.values} values (${d.perturbation.what}): this endpoint generates at most ` +
        `${limits.maxPerturbationWork} a request (maxPerturbationWork)`,
    };
  return null;
}
