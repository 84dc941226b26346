// Seeded direction vectors for zeroth-order methods (FedKSeed, Qin et al. 2024): every party — client
// worker, aggregator, endpoint, CLI — regenerates the same z from (seed, tensor name) instead of sending
// it. Element i depends on (seed, name, i) alone, through the counter-based generator Philox4x32-10
// (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), so a vector can be made in any
// order, in slices, or one element at a time, with the same bits everywhere.
//
// The project's definition (pinned by test vectors):
//   key     = [seed, fnv1a32(UTF-8 of the tensor name)]
//   Gaussian element i: block b = floor(i / 2), x = philox([b, 0, 0, 0], key);
//     u1 = ((x0 >>> 5) * 2^26 + (x1 >>> 6) + 1) / 2^53 in (0, 1], u2 = ((x2 >>> 5) * 2^26 + (x3 >>> 6)) / 2^53;
//     Box-Muller: sqrt(-2 ln u1) * (i even ? cos : sin)(2 pi u2), rounded to float32.
//   Rademacher element i: x = philox([floor(i / 4), 1, 0, 0], key); +1 if bit 31 of x[i mod 4] is 0, else -1.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** The high 32 bits of the 64-bit product of two unsigned 32-bit integers (exact in float64 pieces). */
function mulhi(a: number, b: number): number {
  const aH = a >>> 16;
  const aL = a & 0xffff;
  const bH = b >>> 16;
  const bL = b & 0xffff;
  const mid = aH * bL + aL * bH + ((aL * bL) >>> 16);
  return (aH * bH + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32 with 10 rounds: four 32-bit words of output for a 128-bit counter and a 64-bit key. */
export function philox4x32(counter: readonly number[], key: readonly number[], out = new Uint32Array(4)): Uint32Array {
  let [c0, c1, c2, c3] = counter.map((x) => x >>> 0) as [number, number, number, number];
  let k0 = key[0]! >>> 0;
  let k1 = key[1]! >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

/** FNV-1a (32-bit) of a string's UTF-8 bytes: the tensor's stream of random numbers. */
export function streamOf(name: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(name)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

export type DirectionKind = "gaussian" | "rademacher";

/**
 * Elements [from, from + length) of the direction for (seed, name): a whole tensor's z, or a slice of it.
 * `seed` is an unsigned 32-bit integer.
 */
export function direction(kind: DirectionKind, seed: number, name: string, length: number, from = 0): Float32Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`a direction seed is an unsigned 32-bit integer, got ${seed}`);
  if (!Number.isInteger(from) || from < 0 || !Number.isInteger(length) || length < 0 || from + length > 2 ** 32)
    throw new RangeError(`direction elements [${from}, ${from + length}) are out of range`);
  const key = [seed, streamOf(name)];
  const out = new Float32Array(length);
  const x = new Uint32Array(4);
  let block = -1;
  for (let j = 0; j < length; j++) {
    const i = from + j;
    if (kind === "gaussian") {
      if (Math.floor(i / 2) !== block) {
        block = Math.floor(i / 2);
        philox4x32([block, 0, 0, 0], key, x);
      }
      const u1 = ((x[0]! >>> 5) * 67108864 + (x[1]! >>> 6) + 1) / 9007199254740992;
      const u2 = ((x[2]! >>> 5) * 67108864 + (x[3]! >>> 6)) / 9007199254740992;
      const r = Math.sqrt(-2 * Math.log(u1));
      out[j] = i % 2 === 0 ? r * Math.cos(2 * Math.PI * u2) : r * Math.sin(2 * Math.PI * u2);
    } else {
      if (Math.floor(i / 4) !== block) {
        block = Math.floor(i / 4);
        philox4x32([block, 1, 0, 0], key, x);
      }
      out[j] = x[i % 4]! >>> 31 ? -1 : 1;
    }
  }
  return out;
}
