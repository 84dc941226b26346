// Distributed DP's pieces (src/privacy/distributed-dp.ts): a client's clip and noise, the noise each
// client adds so that any round that closes carries z S on its sum, and the server's fixed denominator.
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { checkDistributed, clientNoiseStd, privatizeUpdate, withDistributedDp } from "../../src/privacy/distributed-dp.ts";

const normals = (seed: number) => (n: number) => Float64Array.from(normalSamples(seededUniform(seed), n, 1));
const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));

describe("distributed DP", () => {
  it("clips a client's update to S and adds N(0, σ_c²) with σ_c = z S / √t", () => {
    const p = { mode: "distributed" as const, clip: 0.5, noiseMultiplier: 1.2, delta: 1e-5 };
    expect(clientNoiseStd(p, 9)).toBeCloseTo((1.2 * 0.5) / 3, 15);
    // Clipping alone (no noise): a norm of 2 becomes 0.5; a norm of 0.1 stays.
    const big = Float32Array.from({ length: 100 }, (_, i) => (i % 2 ? 0.2 : -0.2));
    expect(norm(privatizeUpdate(big.slice(), 0.5, 0, normals(1)))).toBeCloseTo(0.5, 5);
    const small = big.map((x) => x / 20);
    expect(privatizeUpdate(small.slice(), 0.5, 0, normals(1))).toEqual(small);
    // The noise on 20,000 values of a zero update: its standard deviation within 2% of σ_c.
    const noised = privatizeUpdate(new Float32Array(20_000), 0.5, 0.2, normals(2));
    const sd = norm(noised) / Math.sqrt(noised.length);
    expect(Math.abs(sd / 0.2 - 1)).toBeLessThan(0.02);
  });

  it("rescales the round's mean of k updates to the fixed denominator m before the inner step", () => {
    const s = withDistributedDp(createStrategy({ name: "fedavg" }), { updates: 3, expected: 4 });
    const global = new Map([["w", Float32Array.of(1, 2)]]);
    const r = s.aggregateTrain(global, new Map([["w", Float32Array.of(0.4, -0.8)]]), { round: 0, slots: new Map() });
    expect(r.global.get("w")).toEqual(Float32Array.of(1 + 0.4 * 0.75, 2 - 0.8 * 0.75));
    expect(s.name).toBe("distributed-dp(fedavg)");
  });

  it("needs secure aggregation and a fixed clip", () => {
    const p = { mode: "distributed" as const, clip: 1, noiseMultiplier: 1, delta: 1e-5 };
    expect(() => checkDistributed(p, false)).toThrow(/needs secureAggregation/);
    expect(() => checkDistributed({ ...p, adaptiveClip: { targetQuantile: 0.5, learningRate: 0.2 } }, true)).toThrow(/adaptiveClip/);
    expect(() => checkDistributed(p, true)).not.toThrow();
  });
});
