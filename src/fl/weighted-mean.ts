import { FlError } from "./errors.ts";
import { assertFinite, assertSameTensors, type TensorMap } from "./tensors.ts";

/**
 * Example-weighted averaging of client deltas, as Flower's FedAvg weights by `num_examples`:
 * mean = Σ_k n_k·Δ_k / Σ_k n_k.
 *
 * Streamed: `foldDelta` adds one client's n_k·Δ_k into a running sum (the only thing kept, never all
 * deltas), and `meanOf` divides by Σ n_k at the end. The aggregator folds the same way a storage segment
 * at a time (durable-objects/aggregator/accumulator.ts), through the same `checkFold` and `addFold`.
 * `weightedMean` is the same mean computed at once, in float64, for checking the streaming one.
 */

/** Throws FlError `weight_invalid` unless `weight` is a finite number > 0. */
export function assertWeight(weight: number, what: string): void {
  if (typeof weight !== "number" || !Number.isFinite(weight) || weight <= 0)
    throw new FlError("weight_invalid", `${what}: weight must be a finite number > 0, got ${weight}`);
}

/**
 * Refuses, writing nothing, what `addFold` would make of `sum` (zeros when null) and `weight`·`delta`: a NaN
 * or infinity in the delta, or a float32 overflow of the sum, as FlError `non_finite` naming the element
 * (`where(i)`: the tensor and index).
 */
export function checkFold(sum: Float32Array | null, delta: Float32Array, weight: number, where: (i: number) => string): void {
  for (let i = 0; i < delta.length; i++) {
    const d = delta[i]!;
    if (!Number.isFinite(d)) throw new FlError("non_finite", `delta: ${where(i)} holds ${d}`);
    const next = Math.fround((sum === null ? 0 : sum[i]!) + weight * d);
    if (!Number.isFinite(next)) throw new FlError("non_finite", `running sum (float32 overflow): ${where(i)} would hold ${next}`);
  }
}

/** sum += weight·delta, elementwise in float32; `checkFold` first. */
export function addFold(sum: Float32Array, delta: Float32Array, weight: number): void {
  for (let i = 0; i < delta.length; i++) sum[i] = sum[i]! + weight * delta[i]!;
}

/**
 * Adds `weight`·`delta` into `sum` and returns it: in place when `sum` is given, a new map when it is
 * null (the first client; `delta` is copied, never aliased). A refused delta changes nothing: a NaN or
 * infinity in the delta, or a sum that would overflow float32, is answered with FlError `non_finite`
 * naming the tensor and index; other names or sizes than the sum's with `tensor_mismatch`; a weight that
 * is not finite and > 0 with `weight_invalid`.
 */
export function foldDelta(sum: TensorMap | null, delta: TensorMap, weight: number): TensorMap {
  assertWeight(weight, "delta");
  if (sum !== null) assertSameTensors(sum, delta, "delta vs running sum");
  // Check every new value before writing any, so a refusal leaves the sum as it was.
  for (const [name, d] of delta) checkFold(sum?.get(name) ?? null, d, weight, (i) => `tensor "${name}" at index ${i}`);
  const out = sum ?? new Map([...delta].map(([name, d]) => [name, new Float32Array(d.length)]));
  for (const [name, d] of delta) addFold(out.get(name)!, d, weight);
  return out;
}

/** The mean from a running sum: sum / totalWeight, as new tensors. */
export function meanOf(sum: TensorMap, totalWeight: number): TensorMap {
  assertWeight(totalWeight, "total");
  const out: TensorMap = new Map();
  for (const [name, s] of sum) {
    const m = new Float32Array(s.length);
    for (let i = 0; i < s.length; i++) m[i] = s[i]! / totalWeight;
    out.set(name, m);
  }
  return out;
}

/** The weighted mean of all results at once (float64 accumulation): Σ w·Δ / Σ w. */
export function weightedMean(results: readonly { delta: TensorMap; weight: number }[]): TensorMap {
  const first = results[0];
  if (first === undefined) throw new FlError("weight_invalid", "weighted mean of no results: total weight is 0");
  let total = 0;
  results.forEach(({ delta, weight }, k) => {
    assertWeight(weight, `result ${k}`);
    assertSameTensors(first.delta, delta, `result ${k} vs result 0`);
    assertFinite(delta, `result ${k}`);
    total += weight;
  });
  const out: TensorMap = new Map();
  for (const [name, t] of first.delta) {
    const acc = new Float64Array(t.length);
    for (const { delta, weight } of results) {
      const d = delta.get(name)!;
      for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + weight * d[i]!;
    }
    const m = new Float32Array(t.length);
    for (let i = 0; i < m.length; i++) m[i] = acc[i]! / total;
    out.set(name, m);
  }
  return out;
}

/**
 * The example-weighted mean of each metric, as Flower's default metric aggregation: for a metric m,
 * Σ_k n_k·m_k / Σ_k n_k over the clients k that report m (a client that does not report a metric does
 * not dilute it). No results give {}. A non-finite metric is refused with `non_finite`, a number of
 * examples that is not finite and > 0 with `weight_invalid`.
 */
export function weightedMetricMean(
  results: readonly { numExamples: number; metrics: Readonly<Record<string, number>> }[],
): Record<string, number> {
  const sums = new Map<string, { weighted: number; weight: number }>();
  results.forEach(({ numExamples, metrics }, k) => {
    assertWeight(numExamples, `result ${k} numExamples`);
    for (const [key, value] of Object.entries(metrics)) {
      if (typeof value !== "number" || !Number.isFinite(value))
        throw new FlError("non_finite", `result ${k}: metric "${key}" is ${value}, expected a finite number`);
      const acc = sums.get(key) ?? { weighted: 0, weight: 0 };
      acc.weighted += numExamples * value;
      acc.weight += numExamples;
      sums.set(key, acc);
    }
  });
  const out: Record<string, number> = {};
  for (const [key, { weighted, weight }] of sums) out[key] = weighted / weight;
  return out;
}
