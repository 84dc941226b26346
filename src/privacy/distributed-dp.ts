// Distributed client-level DP under secure aggregation (DP-FedAvg, McMahan et al. 2018, with the noise
// split across clients as in Kairouz et al. 2021, "The Distributed Discrete Gaussian Mechanism for
// Federated Learning with Secure Aggregation", but Gaussian in floating point before the fixed-point
// encoding): each client clips its update to L2 norm S and adds N(0, σ_c²) to every value before masking,
// so the aggregator never sees an update and the sum it unmasks carries the noise. σ_c = z S / √t with t
// the fewest clients a round can close with, so any round that closes has noise of at least z S on its
// sum (with all m expected clients, z S √(m / t): dropouts cost utility, not privacy). The server keeps
// DP-FedAvg's unit weights and fixed denominator m.
import type { Strategy } from "../fl/strategy.ts";
import type { TensorMap } from "../fl/tensors.ts";
import type { PrivacyConfig } from "../protocol/privacy.ts";
import { PrivacyError } from "./errors.ts";

/** Each client's noise: σ_c = z S / √t, t the fewest survivors a round can close with. */
export function clientNoiseStd(p: PrivacyConfig, fewestSurvivors: number): number {
  return (p.noiseMultiplier * p.clip) / Math.sqrt(fewestSurvivors);
}

/** A client's update clipped to L2 norm `clip` and noised with N(0, std²) per value (in place); `normals` draws them. */
export function privatizeUpdate(values: Float32Array, clip: number, std: number, normals: (n: number) => Float64Array): Float32Array {
  let sum = 0;
  for (const x of values) sum += x * x;
  const scale = Math.min(1, clip / Math.sqrt(sum));
  const z = normals(values.length);
  for (let i = 0; i < values.length; i++) values[i] = values[i]! * scale + std * z[i]!;
  return values;
}

/**
 * The server's side: the mean of the round's `updates` (unit weights, noised by the clients) rescaled to
 * the fixed denominator `expected`, then the inner strategy's step. Nothing to clip or noise here.
 */
export function withDistributedDp(inner: Strategy, round: { updates: number; expected: number }): Strategy {
  const rescale = round.updates / round.expected;
  return {
    name: `distributed-dp(${inner.name})`,
    ...(inner.initialParameters ? { initialParameters: (t: TensorMap) => inner.initialParameters!(t) } : {}),
    configureTrain: (r) => inner.configureTrain(r),
    aggregateTrain(global, meanDelta, state) {
      const scaled: TensorMap = new Map([...meanDelta].map(([name, t]) => [name, t.map((x) => x * rescale)]));
      return inner.aggregateTrain(global, scaled, state);
    },
    configureEvaluate: (r) => inner.configureEvaluate(r),
    aggregateEvaluate: (results) => inner.aggregateEvaluate(results),
  };
}

/** Distributed DP's settings checked: it needs secure aggregation and a fixed clip. */
export function checkDistributed(p: PrivacyConfig, secure: boolean): void {
  if (!secure)
    throw new PrivacyError(
      "privacy_invalid",
      'mode "distributed" needs secureAggregation: without it the aggregator sees each noised update, whose own noise is far too small',
    );
  if (p.adaptiveClip)
    throw new PrivacyError(
      "privacy_invalid",
      'adaptiveClip with mode "distributed": the count of updates within the clip would have to travel masked too; not built yet',
    );
}
