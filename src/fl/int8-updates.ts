// Updates uploaded as int8 (issue 21, compression): each tensor as I8 values times one float scale per
// tensor, kept in the upload's __metadata__ as "scales" (a JSON object by tensor name). The client rounds
// stochastically (a value rounds up with the probability of its fraction), so each decoded value is the
// delta in expectation and the round's mean carries no rounding bias (QSGD, Alistarh et al. 2017, with
// one level per unit of the scale); the error of one value is below one scale, max|x| / 127.
import { FlError } from "./errors.ts";

/** The largest magnitude an I8 value takes: symmetric, so −128 is never written. */
export const INT8_LEVELS = 127;

/** A tensor as int8 values and its scale (max|x| / 127; 0 for a tensor of zeros), rounded stochastically by `uniform`. */
export function quantizeInt8(values: Float32Array, uniform: () => number): { q: Int8Array; scale: number } {
  let largest = 0;
  for (const x of values) largest = Math.max(largest, Math.abs(x));
  const scale = Math.fround(largest / INT8_LEVELS);
  const q = new Int8Array(values.length);
  if (scale === 0) return { q, scale };
  for (let i = 0; i < values.length; i++) {
    const level = values[i]! / scale;
    const down = Math.floor(level);
    q[i] = Math.max(-INT8_LEVELS, Math.min(INT8_LEVELS, down + (uniform() < level - down ? 1 : 0)));
  }
  return { q, scale };
}

/**
 * The scales of an upload's I8 tensors from its __metadata__ "scales": a JSON object of finite, non-negative
 * numbers, one for each name in `int8` and no other. Throws FlError `tensor_mismatch` naming what is wrong.
 */
export function readScales(metadata: Record<string, string>, int8: readonly string[], what: string): Map<string, number> {
  if (int8.length === 0) {
    if (metadata.scales !== undefined) throw new FlError("tensor_mismatch", `${what}: __metadata__ "scales" without I8 tensors`);
    return new Map();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(metadata.scales ?? "");
  } catch {
    throw new FlError("tensor_mismatch", `${what}: I8 tensors need __metadata__ "scales", a JSON object of each one's scale`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new FlError("tensor_mismatch", `${what}: __metadata__ "scales" is a JSON object of each I8 tensor's scale`);
  const scales = new Map(Object.entries(parsed));
  for (const name of int8) {
    const s = scales.get(name);
    if (typeof s !== "number" || !Number.isFinite(s) || s < 0)
      throw new FlError("tensor_mismatch", `${what}: I8 tensor "${name}" needs a finite, non-negative scale in __metadata__ "scales"`);
  }
  if (scales.size !== int8.length) {
    const extra = [...scales.keys()].find((n) => !int8.includes(n));
    throw new FlError("tensor_mismatch", `${what}: __metadata__ "scales" names "${extra}", which is not an I8 tensor of the upload`);
  }
  return scales as Map<string, number>;
}
