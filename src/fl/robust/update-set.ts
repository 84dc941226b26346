// A round's accepted updates as robust rules read them: each update a flat vector (the version's tensors
// in layout order, src/fl/flat-tensors.ts) with its weight, read a range at a time. The rules below never
// hold whole updates: they walk the vectors in blocks whose values for every update fit a memory budget,
// so a rule over many updates stays inside an isolate's 128 MB (the aggregator keeps the updates in
// storage rows and reads them back the same way).
import { FlError } from "../errors.ts";
import type { FlatSource } from "../flat-tensors.ts";
import { assertWeight } from "../weighted-mean.ts";

/** The updates a robust rule aggregates. */
export interface UpdateSet {
  /** Number of updates. */
  readonly count: number;
  /** Values in each update. */
  readonly total: number;
  /** Update i's weight (its example count, or what a weight cap made of it). */
  weight(i: number): number;
  /** Reads update i's values [start, start + out.length) into `out`. */
  read(i: number, start: number, out: Float32Array): void;
}

/** A vector a rule keeps between passes (the geometric median's estimate): in memory, or in storage rows. */
export interface VectorStore extends FlatSource {
  write(start: number, values: Float32Array): void;
}

/**
 * Bytes of update values a rule reads at once unless told otherwise: 8 MiB (each read copies them once
 * more; bench/robust-cost.ts measures the peak).
 */
export const DEFAULT_BUDGET_BYTES = 8 << 20;

/** Updates held in memory (tests, Node runs). */
export function arrayUpdateSet(updates: readonly Float32Array[], weights: readonly number[]): UpdateSet {
  if (updates.length === 0) throw new FlError("robust_invalid", "a robust rule needs at least one update");
  const total = updates[0]!.length;
  updates.forEach((u, i) => {
    if (u.length !== total) throw new FlError("tensor_mismatch", `update ${i} holds ${u.length} values, update 0 ${total}`);
    assertWeight(weights[i]!, `update ${i}`);
  });
  return {
    count: updates.length,
    total,
    weight: (i) => weights[i]!,
    read: (i, start, out) => out.set(updates[i]!.subarray(start, start + out.length)),
  };
}

/** A vector of `total` zeros in memory. */
export function memoryVector(total: number): VectorStore {
  const values = new Float32Array(total);
  return {
    total,
    read: (start, out) => out.set(values.subarray(start, start + out.length)),
    write: (start, v) => values.set(v, start),
  };
}

/**
 * Calls `fn` for consecutive blocks of [start, end), each holding every update's values of the block
 * (`blocks[i]` is update i's), as long as `budgetBytes` allows for all of them at once (at least one value).
 */
export function forBlocks(
  set: UpdateSet,
  start: number,
  end: number,
  budgetBytes: number,
  fn: (blockStart: number, blocks: readonly Float32Array[]) => void,
): void {
  const width = Math.max(1, Math.floor(budgetBytes / (4 * set.count)));
  const buffers = Array.from({ length: set.count }, () => new Float32Array(Math.min(width, end - start)));
  for (let s = start; s < end; s += width) {
    const n = Math.min(width, end - s);
    const blocks = buffers.map((b, i) => {
      const v = b.subarray(0, n);
      set.read(i, s, v);
      return v;
    });
    fn(s, blocks);
  }
}

/** The set with update i weighted `weights[i]` and its values passed through `map(i, values)` as they are read. */
export function mappedSet(set: UpdateSet, weights: readonly number[], map?: (i: number, values: Float32Array) => void): UpdateSet {
  return {
    count: set.count,
    total: set.total,
    weight: (i) => weights[i]!,
    read(i, start, out) {
      set.read(i, start, out);
      map?.(i, out);
    },
  };
}

/** The updates `indices` of the set, in that order, with their weights. */
export function subsetOf(set: UpdateSet, indices: readonly number[]): UpdateSet {
  return {
    count: indices.length,
    total: set.total,
    weight: (i) => set.weight(indices[i]!),
    read: (i, start, out) => set.read(indices[i]!, start, out),
  };
}
