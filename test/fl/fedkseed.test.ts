import { describe, expect, it } from "vitest";
import { seededUniform } from "../../src/engine/sampling.ts";
import { direction } from "../../src/fl/directions.ts";
import {
  accumulate,
  perturbed,
  pickSeed,
  rebuild,
  seedPool,
  seedProbabilities,
  zoStep,
  type ZoStep,
} from "../../src/fl/methods/fedkseed/seed-pool.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";

// A smooth loss with its minimum at `target`: sum of squared differences over both tensors.
const target: TensorMap = new Map([
  ["a", Float32Array.from({ length: 12 }, (_, i) => Math.sin(i))],
  ["b", Float32Array.from({ length: 5 }, (_, i) => i / 5)],
]);
const quadratic = async (p: TensorMap) => [...p].reduce((s, [k, t]) => s + t.reduce((a, x, i) => a + (x - target.get(k)![i]!) ** 2, 0), 0);
const w0: TensorMap = new Map([
  ["a", new Float32Array(12)],
  ["b", new Float32Array(5)],
]);

describe("FedKSeed", () => {
  it("derives a fixed pool of K distinct seeds from the federation's seed", () => {
    const pool = seedPool(17, 64);
    expect(pool).toEqual(seedPool(17, 64));
    expect(new Set(pool).size).toBe(64);
    expect(seedPool(18, 64)).not.toEqual(pool);
    expect(seedPool(17, 8)).toEqual(pool.slice(0, 8));
  });

  it("rebuilds w0 - lr sum_j c_j z_j equal to replaying the steps one by one", async () => {
    const pool = seedPool(5, 16);
    const u = seededUniform(2);
    let params = w0;
    const steps: ZoStep[] = [];
    const opts = { epsilon: 1e-3, lr: 0.02 };
    for (let s = 0; s < 200; s++) {
      const r = await zoStep(params, pool, pickSeed(pool.length, u()), quadratic, opts);
      params = r.params;
      steps.push(r.step);
    }
    expect(await quadratic(params)).toBeLessThan(0.5 * (await quadratic(w0)));
    const rebuilt = rebuild(w0, pool, accumulate(new Map(), steps), opts.lr);
    for (const [k, t] of params) t.forEach((x, i) => expect(rebuilt.get(k)![i]).toBeCloseTo(x, 4));
    // The sums are per seed: fewer distinct seeds than steps.
    expect(accumulate(new Map(), steps).size).toBeLessThanOrEqual(16);
  });

  it("estimates the directional derivative by two points, regenerates z from the seed, and skips non-finite losses", async () => {
    const pool = seedPool(1, 4);
    const { params, step } = await zoStep(w0, pool, 2, quadratic, { epsilon: 1e-3, lr: 0.1 });
    // For a quadratic the central difference is exact: g = <grad L(w0), z> = sum -2 target * z.
    const exact = [...target].reduce(
      (s, [k, t]) => s + t.reduce((a, x, i) => a - 2 * x * direction("gaussian", pool[2]!, k, t.length)[i]!, 0),
      0,
    );
    expect(step.g).toBeCloseTo(exact, 2);
    expect(params).toEqual(perturbed(w0, pool[2]!, -0.1 * step.g!));
    const skipped = await zoStep(w0, pool, 1, async (p) => (p.get("a")![0]! > 0 ? NaN : 1), { epsilon: 1e-3, lr: 0.1 });
    expect(skipped.step.g).toBeNull();
    expect(skipped.params).toBe(w0);
    expect(accumulate(new Map(), [skipped.step]).size).toBe(0);
  });

  it("FedKSeed-Pro samples seeds with larger mean |g| more often; uniform when nothing is known", () => {
    expect(seedProbabilities([[], [], [], []], 1).every((p) => Math.abs(p - 0.25) < 1e-12)).toBe(true);
    const p = seedProbabilities([[0.1, -0.1], [2, -2], [0.5], []], 1);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(p[1]).toBeGreaterThan(p[2]!);
    expect(p[2]).toBeGreaterThan(p[0]!);
    expect(p[0]).toBeGreaterThan(p[3]!);
    // Clipping: |g| of 2 counts as 1, as does 50.
    expect(seedProbabilities([[2], [50], []], 1).slice(0, 2)).toEqual(seedProbabilities([[1], [1], []], 1).slice(0, 2));
    const u = seededUniform(4);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20_000; i++) counts[pickSeed(4, u(), p)]!++;
    counts.forEach((c, j) => expect(c / 20_000).toBeCloseTo(p[j]!, 1));
  });
});
