// Top-k sparsified updates with error feedback (issue 21, compression): a client sends, of each tensor, the
// k fraction of its values largest in magnitude, and keeps what it did not send to add to its next update
// (error feedback: Stich et al. 2018; Karimireddy et al. 2019), so nothing it learned is dropped, only late.
// On the wire a sparse tensor T is two safetensors entries: T, the values (1-D, float), and T.indices, their
// flat positions in T (I32, strictly ascending); every other position's change is zero.
import { FlError } from "./errors.ts";
import type { TensorMap } from "./tensors.ts";

/** The suffix of a sparse tensor's positions entry. */
export const INDICES_SUFFIX = ".indices";

export interface SparseTensor {
  indices: Int32Array;
  values: Float32Array;
}

/**
 * Of `values`, the ⌈k · n⌉ largest in magnitude (ties to the lower position), as ascending positions and
 * their values.
 */
export function topK(values: Float32Array, k: number): SparseTensor {
  const keep = Math.max(1, Math.ceil(k * values.length));
  const order = Array.from(values.keys()).sort((a, b) => Math.abs(values[b]!) - Math.abs(values[a]!) || a - b);
  const indices = Int32Array.from(order.slice(0, keep)).sort();
  return { indices, values: Float32Array.from(indices, (i) => values[i]!) };
}

/**
 * One round's error feedback: the update plus what earlier rounds did not send, its top k per tensor to send,
 * and what stays behind for the next round (exactly the sum less what is sent).
 */
export function sparsify(
  delta: TensorMap,
  residual: TensorMap | null,
  k: number,
): { sent: Map<string, SparseTensor>; residual: TensorMap } {
  const sent = new Map<string, SparseTensor>();
  const left: TensorMap = new Map();
  for (const [name, d] of delta) {
    const kept = residual?.get(name);
    const sum = kept ? d.map((x, i) => x + kept[i]!) : Float32Array.from(d);
    const s = topK(sum, k);
    sent.set(name, s);
    for (const i of s.indices) sum[i] = 0;
    left.set(name, sum);
  }
  return { sent, residual: left };
}

/**
 * Checks a sparse tensor's positions for a tensor of `size` values: I32, as many as its values, strictly
 * ascending, inside the tensor. Throws FlError `tensor_mismatch` naming the tensor.
 */
export function checkIndices(name: string, indices: Int32Array, count: number, size: number, what: string): void {
  if (indices.length !== count)
    throw new FlError("tensor_mismatch", `${what}: sparse tensor "${name}" has ${count} values and ${indices.length} positions`);
  for (let i = 0; i < indices.length; i++)
    if (indices[i]! < 0 || indices[i]! >= size || (i > 0 && indices[i]! <= indices[i - 1]!))
      throw new FlError(
        "tensor_mismatch",
        `${what}: sparse tensor "${name}": its positions must be strictly ascending within its ${size} values ` +
          `(position ${i} is ${indices[i]})`,
      );
}

/** The first of the ascending `indices` at or after `at` (binary search). */
export function firstAtOrAfter(indices: Int32Array, at: number): number {
  let lo = 0;
  let hi = indices.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (indices[mid]! < at) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
