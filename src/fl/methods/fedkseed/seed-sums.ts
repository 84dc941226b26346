// Per-seed scalars on the wire: a client's FedKSeed upload (the sum of its step scalars per seed of
// the pool) and the aggregator's diff between two versions, both sparse — only the seeds that moved —
// as safetensors with two tensors: `indices` (I32, increasing) and `values` (F32).
import { readSafetensors, writeSafetensors } from "../../../protocol/safetensors.ts";
import { readUpdateHeader, UPDATE_METADATA_BYTES } from "../../flat-tensors.ts";
import { FlError } from "../../errors.ts";

/** A FedKSeed version: the cumulative scalar per seed of the pool, [k]. */
export const SEED_SUMS = "seed_sums";

export function encodeSeedSums(sums: ReadonlyMap<number, number>, metadata: Record<string, string> = { format: "pt" }): Uint8Array {
  const indices = [...sums.keys()].sort((a, b) => a - b);
  return writeSafetensors(
    {
      indices: { dtype: "I32", shape: [indices.length], data: Int32Array.from(indices) },
      values: { dtype: "F32", shape: [indices.length], data: Float32Array.from(indices, (j) => sums.get(j)!) },
    },
    metadata,
  );
}

/** Parses and checks a sparse seed-sum file against a pool of k seeds (throws SafetensorsError or FlError). */
export function decodeSeedSums(
  bytes: Uint8Array,
  k: number,
  what: string,
): { sums: Map<number, number>; metadata: Record<string, string> } {
  // Two tensors and a little metadata: a larger header is refused before it is parsed.
  readUpdateHeader(bytes, UPDATE_METADATA_BYTES);
  const file = readSafetensors(bytes);
  const names = [...file.tensors.keys()].sort();
  if (names.join() !== "indices,values")
    throw new FlError("tensor_mismatch", `${what}: a seed-sum file holds exactly "indices" and "values", not ${JSON.stringify(names)}`);
  const idx = file.tensors.get("indices")!;
  const val = file.tensors.get("values")!;
  if (idx.dtype !== "I32" || val.dtype !== "F32" || idx.shape.length !== 1 || val.shape.length !== 1 || idx.shape[0] !== val.shape[0])
    throw new FlError(
      "tensor_mismatch",
      `${what}: "indices" must be I32 [n] and "values" F32 [n], got ${idx.dtype} ${JSON.stringify(idx.shape)} and ${val.dtype} ` +
        `${JSON.stringify(val.shape)}`,
    );
  const indices = new Int32Array(idx.data.slice().buffer);
  const values = new Float32Array(val.data.slice().buffer);
  const sums = new Map<number, number>();
  indices.forEach((j, n) => {
    if (j < 0 || j >= k) throw new FlError("tensor_mismatch", `${what}: seed index ${j} is outside the pool of ${k}`);
    if (n > 0 && j <= indices[n - 1]!)
      throw new FlError("tensor_mismatch", `${what}: seed indices must increase (index ${j} after ${indices[n - 1]})`);
    if (!Number.isFinite(values[n]!)) throw new FlError("non_finite", `${what}: the value of seed ${j} is not finite`);
    sums.set(j, values[n]!);
  });
  return { sums, metadata: file.metadata };
}

export function denseSeedSums(sums: ReadonlyMap<number, number>, k: number): Float32Array {
  const out = new Float32Array(k);
  for (const [j, v] of sums) out[j] = v;
  return out;
}

/** The entries where `to` differs from `from` (to - from), e.g. what a version added since another. */
export function seedDiff(from: Float32Array, to: Float32Array): Map<number, number> {
  const out = new Map<number, number>();
  to.forEach((v, j) => {
    if (v !== from[j]) out.set(j, v - from[j]!);
  });
  return out;
}
