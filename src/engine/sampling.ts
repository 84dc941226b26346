// Next-token choice from logits: greedy at temperature 0, else temperature and nucleus (top-p) sampling
// (Holtzman et al. 2020) from a seeded generator.

export interface SamplingOptions {
  temperature: number;
  topP: number;
}

/** A stable 32-bit seed from a string (FNV-1a): a client's dropout and batch order, an attacker's noise. */
export function hashSeed(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A seeded uniform [0, 1) generator (mulberry32), so a seed reproduces a sample. */
export function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The `n`th draw stream of a client's round: one generator per (client seed, round, purpose, n), so a
 * resumed job redraws what it drew before, and different purposes (batch order, seed choice) never share numbers.
 */
export function roundStream(clientSeed: number, round: number, purpose: number, n: number): () => number {
  return seededUniform(clientSeed * 7919 + round * 104729 + purpose * 15485863 + n);
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

export function sampleToken(logits: ArrayLike<number>, opts: SamplingOptions, uniform: () => number): number {
  if (opts.temperature <= 0) return argmax(logits);
  const max = logits[argmax(logits)]!;
  const probs = Array.from(logits, (x, id) => ({ id, p: Math.exp((x - max) / opts.temperature) }));
  const z = probs.reduce((s, e) => s + e.p, 0);
  probs.sort((a, b) => b.p - a.p || a.id - b.id);
  // Keep the smallest prefix whose mass reaches top_p (at least one token).
  let mass = 0;
  let keep = 0;
  while (keep < probs.length && (keep === 0 || mass < opts.topP * z)) mass += probs[keep++]!.p;
  let u = uniform() * mass;
  for (let i = 0; i < keep; i++) {
    u -= probs[i]!.p;
    if (u < 0) return probs[i]!.id;
  }
  return probs[keep - 1]!.id;
}

/** log softmax of one row of logits, in float64. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  const max = logits[argmax(logits)]!;
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i]! - max);
  const lz = max + Math.log(z);
  return Float64Array.from(logits as ArrayLike<number>, (x) => x - lz);
}

/** The k largest entries as [index, value], largest first (ties by index): one pass, O(n k) for small k. */
export function topK(values: ArrayLike<number>, k: number): [number, number][] {
  const top: [number, number][] = [];
  if (k <= 0) return top;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (top.length === k && v <= top[k - 1]![1]) continue;
    let at = top.length;
    while (at > 0 && top[at - 1]![1] < v) at--;
    top.splice(at, 0, [i, v]);
    if (top.length > k) top.pop();
  }
  return top;
}
