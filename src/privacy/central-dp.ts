// Central client-level DP as a strategy wrapper (DP-FedAvg, McMahan et al. 2018, "Learning Differentially
// Private Recurrent Language Models", Algorithm 1; Flower's DifferentialPrivacyServerSideFixedClipping):
// each accepted update is clipped to L2 norm S and weighs 1, and the round's mean takes the fixed
// denominator of the expected clients m (the paper's estimator Σ Δ_k / (qW) with unit weights), so one
// client moves it by at most S / m whether it joins or not; the mean then gets Gaussian noise of
// standard deviation z · S / m before the wrapped strategy applies it. The noise is floating-point
// Gaussian from the platform's CSPRNG: DP up to the floating-point caveats of Mironov 2012.
import type { FlatSource } from "../fl/flat-tensors.ts";
import type { ClientUpdate, Strategy } from "../fl/strategy.ts";
import type { TensorMap } from "../fl/tensors.ts";
import type { PrivacyConfig } from "../protocol/privacy.ts";
import { PrivacyError } from "./errors.ts";
import { secureUniform } from "./secure-random.ts";

/** Elements read at a time when a pass over an update computes its norm. */
const PASS = 1 << 16;

/** The update's L2 norm, in float64, one pass over its source. */
export function updateNorm(source: FlatSource): number {
  const buf = new Float32Array(Math.min(PASS, source.total));
  let sum = 0;
  for (let start = 0; start < source.total; start += PASS) {
    const part = buf.subarray(0, Math.min(PASS, source.total - start));
    source.read(start, part);
    for (const x of part) sum += x * x;
  }
  return Math.sqrt(sum);
}

/** The update scaled to an L2 norm of at most `clip` (its source as it is when already within), read lazily. */
export function clipUpdate(u: ClientUpdate, clip: number): ClientUpdate {
  const norm = updateNorm(u.source);
  if (norm <= clip) return { ...u, withinClip: true };
  const scale = clip / norm;
  const source: FlatSource = {
    total: u.source.total,
    read(start, out) {
      u.source.read(start, out);
      for (let i = 0; i < out.length; i++) out[i]! *= scale;
    },
  };
  return { ...u, source, withinClip: false };
}

/** Standard normal draws from crypto.getRandomValues: Box–Muller over 53-bit uniforms. */
export function secureNormals(n: number): Float64Array {
  const out = new Float64Array(n);
  const uniform = secureUniform();
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));
    const theta = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

/** What the close of one round tells the wrapper: the updates it accumulated, the clients it expected, and the round's clip. */
export interface DpRound {
  updates: number;
  expected: number;
  clip: number;
}

/** The standard deviation of the noise on the count of updates within the clip (Andrew et al.: expected clients / 20). */
export const bitNoiseOf = (p: PrivacyConfig, expected: number) => p.adaptiveClip?.bitNoise ?? expected / 20;

/**
 * The noise multiplier on the updates: z itself with a fixed clip; with an adaptive one, raised so that the
 * updates' and the count's noise together spend what z alone would (Andrew et al. 2021, Theorem 1):
 * z_Δ = (z^−2 − (2 σ_b)^−2)^−1/2, which needs z < 2 σ_b.
 */
export function updateNoiseMultiplier(p: PrivacyConfig, expected: number): number {
  if (!p.adaptiveClip) return p.noiseMultiplier;
  const bits = bitNoiseOf(p, expected);
  if (!(p.noiseMultiplier < 2 * bits))
    throw new PrivacyError(
      "privacy_invalid",
      `adaptive clipping needs noiseMultiplier < 2 · bitNoise (${2 * bits} with ${expected} clients a round); got ${p.noiseMultiplier}`,
    );
  return (p.noiseMultiplier ** -2 - (2 * bits) ** -2) ** -0.5;
}

/**
 * The next round's clip (Andrew et al. 2021, Algorithm 1, the geometric update): C · exp(−η (b̄ − γ)). The
 * count released is Σ (b_i − ½) + N(0, σ_b²) over the round's `updates`, so one client moves it by ½
 * (the sensitivity updateNoiseMultiplier's split assumes; tensorflow_privacy centres the bits the same
 * way), and b̄ = released / expected + ½, clamped to [0, 1]. Every update over the clip (b̄ near 0) grows
 * it; every update well within (b̄ near 1) shrinks it; a quantile γ of the norms is its fixed point.
 */
export function nextClip(
  p: PrivacyConfig,
  clip: number,
  round: { within: number; updates: number; expected: number },
  normal: () => number,
): number {
  const a = p.adaptiveClip;
  if (!a) return clip;
  const released = round.within - round.updates / 2 + bitNoiseOf(p, round.expected) * normal();
  const share = Math.min(1, Math.max(0, released / round.expected + 0.5));
  return clip * Math.exp(-a.learningRate * (share - a.targetQuantile));
}

/**
 * `inner` with central DP: processUpdate clips to the round's clip and weighs 1 (after the inner hook, if
 * any); aggregateTrain rescales the mean of `round.updates` to the fixed denominator `round.expected`
 * and adds N(0, (z_Δ C / expected)²) to every coordinate before the inner strategy's step. `normals` draws the noise.
 */
export function withCentralDp(inner: Strategy, p: PrivacyConfig, round: DpRound, normals = secureNormals): Strategy {
  const rescale = round.updates / round.expected;
  const std = (updateNoiseMultiplier(p, round.expected) * round.clip) / round.expected;
  return {
    name: `dp(${inner.name})`,
    ...(inner.initialParameters ? { initialParameters: (t: TensorMap) => inner.initialParameters!(t) } : {}),
    processUpdate: (u) => ({ ...clipUpdate(inner.processUpdate ? inner.processUpdate(u) : u, round.clip), weight: 1 }),
    configureTrain: (r) => inner.configureTrain(r),
    aggregateTrain(global, meanDelta, state) {
      const noisy: TensorMap = new Map();
      for (const [name, t] of meanDelta) {
        const z = normals(t.length);
        noisy.set(
          name,
          t.map((x, i) => x * rescale + std * z[i]!),
        );
      }
      return inner.aggregateTrain(global, noisy, state);
    },
    configureEvaluate: (r) => inner.configureEvaluate(r),
    aggregateEvaluate: (results) => inner.aggregateEvaluate(results),
  };
}
