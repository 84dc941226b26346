// A client's update as an HTTP request: the body (a delta as safetensors, or FedKSeed's per-seed sums)
// with num_examples and metrics in its __metadata__, an idempotency key that names the (federation,
// round, client) slot, and what each attempt's answer means. The caller signs each attempt anew.
import type { UploadDType } from "../../protocol/federation.ts";
import { writeSafetensors, type TensorInput } from "../../protocol/safetensors.ts";
import { quantizeInt8 } from "../int8-updates.ts";
import { INDICES_SUFFIX, type SparseTensor } from "../sparse-updates.ts";
import { encodeTensorFile } from "../tensor-file.ts";
import type { LocalResult } from "./local-update.ts";
import { busy } from "./transient.ts";

/** The metadata every update carries. */
export function updateMetadata(numExamples: number, metrics: Record<string, number>): Record<string, string> {
  return { format: "pt", num_examples: String(numExamples), metrics: JSON.stringify(metrics) };
}

/**
 * A gradient method's update body: the delta (trained minus global) in `dtype`; I8 rounds stochastically
 * with `uniform` (int8-updates.ts) and writes each tensor's scale in the metadata.
 */
export function deltaBody(
  result: LocalResult,
  shapes: ReadonlyMap<string, readonly number[]>,
  dtype: UploadDType = "F32",
  uniform: () => number = Math.random,
): Uint8Array {
  const metadata = updateMetadata(result.numExamples, result.metrics);
  if (dtype !== "I8") return encodeTensorFile(result.delta, shapes, metadata, dtype);
  const input: Record<string, TensorInput> = {};
  const scales: Record<string, number> = {};
  for (const [name, t] of result.delta) {
    const { q, scale } = quantizeInt8(t, uniform);
    input[name] = { dtype: "I8", shape: [...(shapes.get(name) ?? [t.length])], data: q };
    scales[name] = scale;
  }
  return writeSafetensors(input, { ...metadata, scales: JSON.stringify(scales) });
}

/** A sparse update's body (sparse-updates.ts): each tensor's sent values (F32) and their positions (I32). */
export function sparseBody(sent: ReadonlyMap<string, SparseTensor>, numExamples: number, metrics: Record<string, number>): Uint8Array {
  const input: Record<string, TensorInput> = {};
  for (const [name, s] of sent) {
    input[name] = { dtype: "F32", shape: [s.values.length], data: s.values };
    input[name + INDICES_SUFFIX] = { dtype: "I32", shape: [s.indices.length], data: s.indices };
  }
  return writeSafetensors(input, updateMetadata(numExamples, metrics));
}

/** Where an update goes, and its headers besides the signature: the same idempotency key on every attempt. */
export function uploadRequest(federationId: string, round: number, clientId: string): { path: string; headers: Record<string, string> } {
  const path = `/federations/${encodeURIComponent(federationId)}/rounds/${round}/updates/${encodeURIComponent(clientId)}`;
  return { path, headers: { "idempotency-key": `${federationId}/${round}/${clientId}`, "content-type": "application/octet-stream" } };
}

/** Attempts in all before an upload's job fails; with uploadRetryDelayMs, about two minutes of retrying. */
export const MAX_UPLOAD_ATTEMPTS = 8;

/** The wait after failed attempt `attempt` (0-based): 1 s, 2 s, 4 s, ... */
export function uploadRetryDelayMs(attempt: number): number {
  return 1000 * 2 ** attempt;
}

export interface UploadOutcome {
  /** accepted (2xx, including the coordinator's answer to a retry it already folded); retry; refused for good. */
  outcome: "accepted" | "retry" | "refused";
  detail: string;
}

/**
 * Sends one attempt and says what its answer means. Retried: the coordinator not reached (the update may
 * or may not have landed: the same key and body make a retry safe), a server error or 429, and a 401
 * signature_expired (a clock off by more than the window, or a slow transfer: the retry is signed anew).
 */
export async function attemptUpload(send: () => Promise<Response>): Promise<UploadOutcome> {
  let res: Response;
  try {
    res = await send();
  } catch (e) {
    return { outcome: "retry", detail: (e as Error).message };
  }
  const text = await res.text();
  const detail = `${res.status} ${text}`;
  if (res.ok) return { outcome: "accepted", detail };
  if (busy(res.status) || (res.status === 401 && errorCode(text) === "signature_expired")) return { outcome: "retry", detail };
  return { outcome: "refused", detail };
}

/** The coordinator's error code ({"error": {"code"}}), if the answer is one. */
function errorCode(text: string): string | undefined {
  try {
    return (JSON.parse(text) as { error?: { code?: string } } | null)?.error?.code;
  } catch {
    return undefined;
  }
}
