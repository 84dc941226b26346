// Fixed-point encoding of an update for secure aggregation (Bonawitz et al. 2017, section 3; Bell et al.
// 2020): each value, clamped to [−range, range], becomes an integer in [0, 2^bits − 1] by unbiased
// stochastic rounding, so that up to 2^(32 − bits) clients' vectors add in Z_2^32 without wrapping and the
// sum decodes to the float sum up to the rounding (each value's error below 1 / scale, zero in mean).
import { SecAggError } from "./errors.ts";

export interface FixedPoint {
  /** Values are clamped to [−range, range]: the clip bound times the largest weight a client may carry. */
  range: number;
  /** Bits per encoded value; the rest of 32 leaves room for the sum of maxClients values. */
  bits: number;
}

export const MODULUS = 2 ** 32;

/** The encoding for sums of up to `maxClients` vectors of values in [−range, range]: as many bits as fit. */
export function fixedPointFor(range: number, maxClients: number): FixedPoint {
  if (!(range > 0) || !Number.isFinite(range))
    throw new SecAggError("secagg_invalid", `the fixed-point range is finite and > 0, got ${range}`);
  if (!(Number.isInteger(maxClients) && maxClients >= 1))
    throw new SecAggError("secagg_invalid", `the clients a sum may hold are a whole number ≥ 1, got ${maxClients}`);
  const bits = 32 - Math.ceil(Math.log2(maxClients));
  if (bits < 8) throw new SecAggError("secagg_invalid", `${maxClients} clients leave ${bits} bits a value: too coarse`);
  return { range, bits };
}

/** Encoded units per unit of value. */
const scaleOf = (fp: FixedPoint) => (2 ** fp.bits - 1) / (2 * fp.range);

/** Each value clamped, shifted to [0, 2 range], scaled and rounded up with probability its fraction (`uniform` in [0, 1)). */
export function encode(values: ArrayLike<number>, fp: FixedPoint, uniform: () => number): Uint32Array {
  return encodeEach(values.length, (i) => values[i]!, fp, uniform);
}

/** encode over the values `valueAt` gives, without an array of them (a large update encodes in its own size). */
export function encodeEach(length: number, valueAt: (i: number) => number, fp: FixedPoint, uniform: () => number): Uint32Array {
  const scale = scaleOf(fp);
  const top = 2 ** fp.bits - 1;
  const out = new Uint32Array(length);
  for (let i = 0; i < length; i++) {
    const v = valueAt(i);
    if (!Number.isFinite(v)) throw new SecAggError("secagg_invalid", `value ${i} is ${v}: an update to encode is finite`);
    const x = Math.min(fp.range, Math.max(-fp.range, v));
    out[i] = Math.min(top, Math.floor((x + fp.range) * scale + uniform()));
  }
  return out;
}

/** The float sum of `count` encoded vectors from their sum in Z_2^32. */
export function decodeSum(sum: Uint32Array, fp: FixedPoint, count: number): Float64Array {
  if (count * (2 ** fp.bits - 1) >= MODULUS)
    throw new SecAggError("secagg_invalid", `${count} vectors of ${fp.bits} bits overflow the 32-bit ring`);
  const scale = scaleOf(fp);
  return Float64Array.from(sum, (s) => s / scale - count * fp.range);
}

/** a + b in Z_2^32, element-wise, into `a`. */
export function addInto(a: Uint32Array, b: Uint32Array, sign: 1 | -1 = 1): Uint32Array {
  if (a.length !== b.length) throw new SecAggError("secagg_invalid", `vectors of ${a.length} and ${b.length} elements`);
  for (let i = 0; i < a.length; i++) a[i] = sign === 1 ? a[i]! + b[i]! : a[i]! - b[i]!;
  return a;
}
