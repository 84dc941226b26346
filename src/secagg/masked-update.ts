// A client's update as secure aggregation carries it: its values times its weight ratio, then the ratio
// itself, each fixed-point encoded (fixed-point.ts), so that the unmasked sum holds Σ rᵢ Δᵢ and Σ rᵢ and
// their quotient is the weighted mean (rᵢ = min(nᵢ / maxWeight, 1), as Flower's SecAgg+ weighs updates).
// On the wire one U32 tensor, masked, in a safetensors file whose metadata is an upload's.
import type { FlatSource } from "../fl/flat-tensors.ts";
import { readSafetensors, writeSafetensors } from "../protocol/safetensors.ts";
import { SecAggError } from "./errors.ts";
import { decodeSum, encodeEach, type FixedPoint, fixedPointFor } from "./fixed-point.ts";

/** The masked input's one tensor. */
export const MASKED_INPUT = "secagg.masked_input";

export interface SecureEncoding {
  fp: FixedPoint;
  maxWeight: number;
  /** The update's values (the version's layout); the encoded vector has one more, the weight ratio. */
  values: number;
}

/** The encoding of a round of up to `clients` updates of `values` values. */
export function secureEncoding(o: { range: number; maxWeight: number; clients: number; values: number }): SecureEncoding {
  return { fp: fixedPointFor(o.range, o.clients), maxWeight: o.maxWeight, values: o.values };
}

/** A client's weight ratio: its examples over maxWeight, at most 1. */
export const weightRatio = (numExamples: number, maxWeight: number) => Math.min(numExamples / maxWeight, 1);

/** The encoded vector a client masks: r · each value, then r. */
export function encodeUpdate(update: FlatSource, numExamples: number, enc: SecureEncoding, uniform: () => number): Uint32Array {
  if (update.total !== enc.values)
    throw new SecAggError("secagg_invalid", `an update of ${update.total} values in a round of ${enc.values}`);
  const r = weightRatio(numExamples, enc.maxWeight);
  const flat = new Float32Array(enc.values);
  update.read(0, flat);
  return encodeEach(enc.values + 1, (i) => (i < enc.values ? r * flat[i]! : r), enc.fp, uniform);
}

/**
 * Σ rᵢ from the unmasked sum's last word, over `count` clients, checked to be what `count` honest ratios in
 * [1 / maxWeight, 1] can sum to (within the rounding): a client that masked another value would skew the mean.
 */
export function ratioSum(lastWord: number, enc: SecureEncoding, count: number): number {
  const ratios = decodeSum(inEncoding(Uint32Array.of(lastWord), enc, count), enc.fp, count)[0]!;
  const slack = (count * 2 * enc.fp.range) / (2 ** enc.fp.bits - 1);
  if (!(ratios >= count / enc.maxWeight - slack && ratios <= count + slack))
    throw new SecAggError(
      "secagg_invalid",
      `the ${count} weight ratios sum to ${ratios}, outside [${count} / ${enc.maxWeight}, ${count}]: a client masked another value`,
    );
  return ratios;
}

/**
 * The words of a sum of `count` encoded vectors, checked to be what they can sum to: each value below
 * 2^bits, so each sum at most count (2^bits − 1). SecAgg+ checks no range of a client's input (the masks hide
 * it); this catches a client's words outside the encoding when they land above that, not every such client.
 */
function inEncoding(words: Uint32Array, enc: SecureEncoding, count: number): Uint32Array {
  const top = count * (2 ** enc.fp.bits - 1);
  const at = words.findIndex((w) => w > top);
  if (at >= 0)
    throw new SecAggError("secagg_invalid", `the unmasked sum holds ${words[at]} at ${at}, more than ${count} encoded values can make`);
  return words;
}

/** The weighted mean's values from a segment of the unmasked sum: Σ rᵢ Δᵢ / Σ rᵢ. */
export function meanSegment(words: Uint32Array, enc: SecureEncoding, count: number, ratios: number): Float32Array {
  if (!(ratios > 0)) throw new SecAggError("secagg_invalid", `the survivors' weight ratios sum to ${ratios}`);
  return Float32Array.from(decodeSum(inEncoding(words, enc, count), enc.fp, count), (x) => x / ratios);
}

/** The masked input as an upload's body: its one U32 tensor and the upload's metadata. */
export function maskedInputFile(masked: Uint32Array, metadata: Record<string, string>): Uint8Array<ArrayBuffer> {
  return writeSafetensors({ [MASKED_INPUT]: { dtype: "U32", shape: [masked.length], data: masked } }, metadata);
}

/** A masked input's words, read a segment at a time into `out` from the body (no copy of the whole), and its metadata. */
export interface MaskedInput {
  read(start: number, out: Uint32Array): void;
  metadata: Record<string, string>;
}

/** A masked input, checked to be one U32 tensor of `length` words. */
export function readMaskedInput(body: Uint8Array, length: number): MaskedInput {
  const file = readSafetensors(body);
  const t = file.tensors.get(MASKED_INPUT);
  if (file.tensors.size !== 1 || !t || t.dtype !== "U32" || t.shape.length !== 1 || t.shape[0] !== length)
    throw new SecAggError(
      "secagg_invalid",
      `a masked input is one tensor "${MASKED_INPUT}" of dtype U32 and shape [${length}] (the version's values and the weight ratio)`,
    );
  const data = t.data;
  return {
    read: (start, out) =>
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(data.subarray(4 * start, 4 * (start + out.length))),
    metadata: file.metadata,
  };
}
