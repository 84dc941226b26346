// FedKSeed (Qin et al., "Federated full-parameter tuning of billion-sized language models with
// communication cost under 18 kilobytes", ICML 2024): zeroth-order steps whose perturbations come from
// a pool of K seeds fixed per federation, so a step is (seed index, scalar gradient) on the wire and
// any party rebuilds the model as w0 - lr * sum_j c_j z_j from the cumulative scalar per seed.
import type { TensorMap } from "../../tensors.ts";
import { direction, philox4x32, type DirectionKind } from "../../directions.ts";

/** The federation's K seeds (unsigned 32-bit), derived from its seed. */
export function seedPool(federationSeed: number, k: number): number[] {
  return Array.from({ length: k }, (_, j) => philox4x32([j, 0, 0, 0], [federationSeed >>> 0, 0x6b5eed])[0]!);
}

/** params + scale * z(seed), tensor by tensor (z regenerated from the seed and the tensor's name). */
export function perturbed(params: TensorMap, seed: number, scale: number, kind: DirectionKind = "gaussian"): TensorMap {
  return new Map(
    [...params].map(([name, t]) => {
      const z = direction(kind, seed, name, t.length);
      return [name, t.map((x, i) => x + scale * z[i]!)];
    }),
  );
}

export interface ZoOptions {
  /** The perturbation's scale epsilon. */
  epsilon: number;
  /** The constant learning rate eta. */
  lr: number;
  kind?: DirectionKind;
}

export interface ZoStep {
  seedIndex: number;
  /** The two-point estimate (L(w + eps z) - L(w - eps z)) / (2 eps), or null when a loss was not finite (the step is skipped). */
  g: number | null;
  lossPlus: number;
  lossMinus: number;
}

/**
 * Parameters as a list of moves from w0, (seed, scale) meaning + scale * z(seed): how a client whose model
 * lives at an endpoint names a point to evaluate there (`terms` of POST /v1/perturbed-scores).
 */
export type SeedTerms = readonly (readonly [number, number])[];

/** How a step moves a point: tensors moved in place of z, or one more term. */
export type Mover<P> = (params: P, seed: number, scale: number) => P;

export const moveTensors =
  (kind: DirectionKind = "gaussian"): Mover<TensorMap> =>
  (params, seed, scale) =>
    perturbed(params, seed, scale, kind);

export const moveTerms: Mover<SeedTerms> = (terms, seed, scale) => [...terms, [seed, scale] as const];

/** One two-point step along the pool's seed `j`: w <- w - lr * g * z. Returns the new parameters and the step. */
export async function zoStep<P = TensorMap>(
  params: P,
  pool: readonly number[],
  j: number,
  loss: (p: P) => Promise<number>,
  o: ZoOptions,
  move: Mover<P> = moveTensors(o.kind) as unknown as Mover<P>,
): Promise<{ params: P; step: ZoStep }> {
  const seed = pool[j]!;
  const lossPlus = await loss(move(params, seed, o.epsilon));
  const lossMinus = await loss(move(params, seed, -o.epsilon));
  if (!Number.isFinite(lossPlus) || !Number.isFinite(lossMinus)) return { params, step: { seedIndex: j, g: null, lossPlus, lossMinus } };
  const g = (lossPlus - lossMinus) / (2 * o.epsilon);
  return { params: move(params, seed, -o.lr * g), step: { seedIndex: j, g, lossPlus, lossMinus } };
}

/** w0 + sum of scale * z(seed) over the terms, in their order. */
export function applyTerms(w0: TensorMap, terms: SeedTerms, kind: DirectionKind = "gaussian"): TensorMap {
  const out: TensorMap = new Map([...w0].map(([k, t]) => [k, Float32Array.from(t)]));
  for (const [seed, scale] of terms)
    for (const [name, t] of out) {
      const z = direction(kind, seed, name, t.length);
      for (let i = 0; i < t.length; i++) t[i]! += scale * z[i]!;
    }
  return out;
}

/** Adds step scalars into per-seed sums (seed index -> sum of g). */
export function accumulate(into: Map<number, number>, steps: readonly ZoStep[]): Map<number, number> {
  for (const s of steps) if (s.g !== null) into.set(s.seedIndex, (into.get(s.seedIndex) ?? 0) + s.g);
  return into;
}

/** w0 - lr * sum_j c_j z_j, summed in increasing seed index, so every party gets the same bits. */
export function rebuild(
  w0: TensorMap,
  pool: readonly number[],
  coefficients: ReadonlyMap<number, number>,
  lr: number,
  kind: DirectionKind = "gaussian",
): TensorMap {
  return applyTerms(w0, globalTerms(pool, coefficients, lr), kind);
}

/** The global model's terms: (seed_j, -lr * c_j) for every moved seed, in increasing index. */
export function globalTerms(pool: readonly number[], coefficients: ReadonlyMap<number, number>, lr: number): [number, number][] {
  return [...coefficients.keys()]
    .sort((a, b) => a - b)
    .flatMap((j) => (coefficients.get(j) === 0 ? [] : [[pool[j]!, -lr * coefficients.get(j)!] as [number, number]]));
}

/**
 * FedKSeed-Pro's seed probabilities: each seed's importance is the mean |g| of its history (values
 * clipped to [-clip, clip]), min-max normalised, then softmax. Seeds without history count as 0.
 */
export function seedProbabilities(history: readonly (readonly number[])[], clip: number): number[] {
  const amp = history.map((h) => (h.length ? h.reduce((s, g) => s + Math.min(Math.abs(g), clip), 0) / h.length : 0));
  const lo = Math.min(...amp);
  const hi = Math.max(...amp);
  const norm = amp.map((a) => (a - lo) / (hi - lo + 1e-10));
  const top = Math.max(...norm);
  const e = norm.map((x) => Math.exp(x - top));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

/** A seed index drawn from `probabilities` (uniform when absent) with one uniform number u in [0, 1). */
export function pickSeed(k: number, u: number, probabilities?: readonly number[]): number {
  if (!probabilities) return Math.min(k - 1, Math.floor(u * k));
  let acc = 0;
  for (let j = 0; j < k; j++) {
    acc += probabilities[j]!;
    if (u < acc) return j;
  }
  return k - 1;
}
