// Central DP as a strategy wrapper (src/privacy/central-dp.ts) on the aggregator's own upload seam:
// processUpdate before the accumulator, the close applying the wrapped strategy a segment at a time, over
// SQLite. Checked against a float64 computation of DP-FedAvg: each update clipped to S and weighing 1,
// the sum over the expected clients m, plus z S / m times the noise drawn.
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { nodeSql } from "../../bench/lib/node-sql.ts";
import { closeSegments, StreamingSum } from "../../durable-objects/aggregator/accumulator.ts";
import { readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { arraySource, flatLayout } from "../../src/fl/flat-tensors.ts";
import { encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { clipUpdate, nextClip, secureNormals, updateNoiseMultiplier, updateNorm, withCentralDp } from "../../src/privacy/central-dp.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";

const privacy = { mode: "central" as const, clip: 2, noiseMultiplier: 0.5, delta: 1e-5 };

/** Runs `updates` through `strategy`'s hook, the accumulator and the close; the next global, flat. */
function aggregate(strategy: ReturnType<typeof createStrategy>, global: Float32Array, updates: { values: number[]; weight: number }[]) {
  const sql = nodeSql(new DatabaseSync(":memory:"));
  sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
  const file = encodeTensorFile(
    new Map([
      ["a", global.slice(0, 3)],
      ["b", global.slice(3)],
    ]),
    new Map([
      ["a", [3]],
      ["b", [global.length - 3]],
    ]),
  );
  writeBlob(sql, "v0", file);
  const header = readSafetensorsHeader(file);
  const layout = flatLayout(header);
  let totalWeight = 0;
  updates.forEach(({ values, weight }, i) => {
    const u = strategy.processUpdate!({ clientId: `c${i}`, layout, source: arraySource(Float32Array.from(values)), weight });
    new StreamingSum(sql, "sum", layout, { count: i, totalWeight }).add(u.source, u.weight);
    totalWeight += u.weight;
  });
  const sum = new StreamingSum(sql, "sum", layout, { count: updates.length, totalWeight });
  closeSegments(sql, {
    layout,
    globalKey: "v0",
    dataStart: header.dataStart,
    mean: (start, n) => sum.mean(start, n),
    strategy,
    round: 0,
    slots: [],
    stateKey: (s) => `state/${s}`,
    nextKey: "v1",
    nextStateKey: (s) => `next/${s}`,
  });
  const bytes = readBlob(sql, "v1")!;
  return new Float32Array(bytes.slice(readSafetensorsHeader(bytes).dataStart).buffer);
}

describe("central DP (DP-FedAvg) as a strategy wrapper", () => {
  it("clips an update to the norm S in one pass, leaving one within it as it is", () => {
    const values = Float32Array.of(6, 0, 0, 8, 0);
    expect(updateNorm(arraySource(values))).toBe(10);
    const layout = flatLayout(readSafetensorsHeader(encodeTensorFile(new Map([["a", values]]), new Map([["a", [5]]]))));
    const u = { clientId: "c", layout, source: arraySource(values), weight: 3 };
    const clipped = clipUpdate(u, 2);
    const out = new Float32Array(5);
    clipped.source.read(0, out);
    expect([...out]).toEqual([1.2, 0, 0, 1.6, 0].map(Math.fround));
    expect(clipped.weight).toBe(3);
    expect(clipUpdate(u, 10)).toEqual({ ...u, withinClip: true });
    expect(clipped.withinClip).toBe(false);
  });

  it("gives global + (Σ clipped updates) / m + z S / m · noise, whatever the weights, with the wrapped strategy's step", () => {
    const n = 7;
    const global = Float32Array.from(normalSamples(seededUniform(1), n, 1));
    const updates = [
      { values: [6, 0, 0, 8, 0, 0, 0], weight: 1 }, // norm 10: scaled by 0.2
      { values: [0, 0, 1, 0, 0, 0.5, 0], weight: 300 }, // within S
      { values: [0, -3, 0, 0, 4, 0, 0], weight: 20 }, // norm 5: scaled by 0.4
    ];
    // Fixed draws for the noise: what the CSPRNG would give, made repeatable.
    const draws = Float64Array.from([0.3, -1.2, 2.0, 0.1, -0.7, 1.5, -0.4]);
    let drawn = 0;
    const normals = (k: number) => {
      const out = draws.slice(drawn, drawn + k);
      drawn += k;
      return out;
    };
    // Three of the four expected clients uploaded: the mean still divides by 4.
    const strategy = withCentralDp(createStrategy({ name: "fedavg" }), privacy, { updates: 3, expected: 4, clip: privacy.clip }, normals);
    const got = aggregate(strategy, global, updates);
    const scale = [0.2, 1, 0.4];
    for (let i = 0; i < n; i++) {
      const sum = updates.reduce((s, u, k) => s + scale[k]! * u.values[i]!, 0);
      const want = global[i]! + sum / 4 + ((privacy.noiseMultiplier * privacy.clip) / 4) * draws[i]!;
      expect(got[i]).toBeCloseTo(want, 5);
    }
    expect(strategy.name).toBe("dp(fedavg)");
    // Through FedAdam the same noisy mean is the pseudo-gradient: the step differs from FedAvg's.
    drawn = 0;
    const adam = withCentralDp(
      createStrategy({ name: "fedadam", eta: 0.1 }),
      privacy,
      { updates: 3, expected: 4, clip: privacy.clip },
      normals,
    );
    expect(aggregate(adam, global, updates)[0]).not.toBeCloseTo(got[0]!, 3);
  });

  it("moves an adaptive clip the paper's way: up when updates exceed it, down when they fit, still at the target quantile", () => {
    const adaptive = { ...privacy, noiseMultiplier: 1, adaptiveClip: { targetQuantile: 0.5, learningRate: 0.2, bitNoise: 5 } };
    const noNoise = () => 0;
    // None of 10 within: b̄ = 0, C · exp(0.2 · 0.5); all within: C · exp(−0.2 · 0.5); half: unchanged.
    const of10 = (within: number, updates = 10) => ({ within, updates, expected: 10 });
    expect(nextClip(adaptive, 2, of10(0), noNoise)).toBeCloseTo(2 * Math.exp(0.1), 12);
    expect(nextClip(adaptive, 2, of10(10), noNoise)).toBeCloseTo(2 * Math.exp(-0.1), 12);
    expect(nextClip(adaptive, 2, of10(5), noNoise)).toBe(2);
    // 6 of 8 uploads within, of 10 expected: b̄ = (6 − 4) / 10 + ½ = 0.7.
    expect(nextClip(adaptive, 2, of10(6, 8), noNoise)).toBeCloseTo(2 * Math.exp(-0.2 * 0.2), 12);
    // b̄ is clamped to [0, 1] whatever the noise draws.
    expect(nextClip(adaptive, 2, of10(10), () => 100)).toBeCloseTo(2 * Math.exp(-0.1), 12);
    // The count's noise: one standard deviation (5) on 10 clients adds 0.5 to b̄.
    expect(nextClip(adaptive, 2, of10(5), () => 1)).toBeCloseTo(2 * Math.exp(-0.2 * 0.5), 12);
    expect(nextClip(privacy, 2, of10(0), noNoise)).toBe(2);
    // The updates' noise rises so both noises spend what z alone would: (1 − (2 · 5)^−2)^−1/2.
    expect(updateNoiseMultiplier(adaptive, 10)).toBeCloseTo((1 - 1 / 100) ** -0.5, 12);
    expect(updateNoiseMultiplier(privacy, 10)).toBe(privacy.noiseMultiplier);
    // The default bit noise is 10 / 20 = 0.5: z = 1 is not below 2 σ_b = 1.
    expect(() => updateNoiseMultiplier({ ...adaptive, adaptiveClip: { targetQuantile: 0.5, learningRate: 0.2 } }, 10)).toThrow(
      /noiseMultiplier < 2 · bitNoise \(1 with 10 clients a round\)/,
    );
  });

  it("draws standard normals from the CSPRNG: mean 0, variance 1, 95% within ±1.96", () => {
    const n = 200_000;
    const z = secureNormals(n);
    const mean = z.reduce((a, b) => a + b, 0) / n;
    const variance = z.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    const inside = z.filter((x) => Math.abs(x) < 1.959963984540054).length / n;
    expect(Math.abs(inside - 0.95)).toBeLessThan(5 * Math.sqrt((0.95 * 0.05) / n));
    expect(secureNormals(3)).toHaveLength(3);
  });
});
