// The robust aggregation rules (src/fl/robust/) against float64 references written here from the papers'
// definitions, on random updates read in blocks of a few values (a small memory budget) so every block
// boundary is crossed; then each rule against synthetic attacks where the plain mean fails.
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { FlError } from "../../src/fl/errors.ts";
import type { Aggregate } from "../../src/fl/robust/aggregate.ts";
import { robustAggregate } from "../../src/fl/robust/rules.ts";
import type { RobustConfig } from "../../src/protocol/robust.ts";
import { arrayUpdateSet, forBlocks, type UpdateSet } from "../../src/fl/robust/update-set.ts";

const D = 37;
/** A budget of 3 values per update per block. */
const budgetFor = (n: number) => 4 * n * 3;

function randomUpdates(n: number, seed: number, std = 1): Float32Array[] {
  const u = seededUniform(seed);
  return Array.from({ length: n }, () => normalSamples(u, D, std));
}
/** The aggregate read 5 values at a time, as float64. */
function readAll(a: Aggregate, total = D): number[] {
  const out = new Float32Array(total);
  for (let s = 0; s < total; s += 5) a.read(s, out.subarray(s, Math.min(total, s + 5)));
  return Array.from(out);
}
const run = (config: RobustConfig, vs: Float32Array[], weights = vs.map((_, i) => i + 1)) =>
  robustAggregate(config, arrayUpdateSet(vs, weights), { budgetBytes: budgetFor(vs.length) });

// References, whole vectors in float64.
const column = (vs: Float32Array[], j: number) => vs.map((v) => v[j]!).sort((a, b) => a - b);
const refMedian = (vs: Float32Array[]) =>
  Array.from({ length: D }, (_, j) => {
    const c = column(vs, j);
    const m = c.length >> 1;
    return c.length % 2 ? c[m]! : (c[m - 1]! + c[m]!) / 2;
  });
const refTrimmed = (vs: Float32Array[], cut: number) =>
  Array.from({ length: D }, (_, j) => {
    const c = column(vs, j).slice(cut, vs.length - cut);
    return c.reduce((a, b) => a + b, 0) / c.length;
  });
const refMean = (vs: ArrayLike<number>[], w: readonly number[]) =>
  Array.from({ length: D }, (_, j) => vs.reduce((s, v, i) => s + w[i]! * v[j]!, 0) / w.reduce((a, b) => a + b, 0));
const dist2 = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, k) => s + (x - b[k]!) ** 2, 0);
const norm = (a: ArrayLike<number>) => Math.sqrt(dist2(a, new Float64Array(a.length)));
function refKrum(vs: Float32Array[], f: number, m: number): { selected: number[]; mean: number[] } {
  const n = vs.length;
  const scores = vs.map((v, i) =>
    vs
      .filter((_, j) => j !== i)
      .map((w) => dist2(v, w))
      .sort((a, b) => a - b)
      .slice(0, n - f - 2)
      .reduce((a, b) => a + b, 0),
  );
  const selected = vs
    .map((_, i) => i)
    .sort((a, b) => scores[a]! - scores[b]! || a - b)
    .slice(0, m);
  return {
    selected,
    mean: refMean(
      selected.map((i) => vs[i]!),
      selected.map(() => 1),
    ),
  };
}
/** Bulyan: θ = n − 2f picks of Krum among those left, then each coordinate's β = θ − 2f values nearest its median, averaged. */
function refBulyan(vs: Float32Array[], f: number): { selected: number[]; mean: number[] } {
  const left = vs.map((_, i) => i);
  const selected: number[] = [];
  while (selected.length < vs.length - 2 * f) {
    const near = Math.max(1, left.length - f - 2);
    const score = (i: number) =>
      left
        .filter((j) => j !== i)
        .map((j) => dist2(vs[i]!, vs[j]!))
        .sort((a, b) => a - b)
        .slice(0, near)
        .reduce((a, b) => a + b, 0);
    const best = [...left].sort((a, b) => score(a) - score(b) || a - b)[0]!;
    selected.push(best);
    left.splice(left.indexOf(best), 1);
  }
  const beta = selected.length - 2 * f;
  const picked = selected.map((i) => vs[i]!);
  const medians = refMedian(picked);
  const mean = medians.map((m, j) =>
    column(picked, j)
      .sort((a, b) => Math.abs(a - m) - Math.abs(b - m))
      .slice(0, beta)
      .reduce((a, b) => a + b / beta, 0),
  );
  return { selected, mean };
}
/** Smoothed Weiszfeld (RFA, Pillutla et al. 2022) from the weighted mean, `iterations` steps. */
function refWeiszfeld(vs: Float32Array[], w: readonly number[], iterations: number, nu = 1e-6): number[] {
  const total = w.reduce((a, b) => a + b, 0);
  const alpha = w.map((x) => x / total);
  let z = refMean(vs, alpha);
  for (let t = 0; t < iterations; t++) {
    const beta = vs.map((v, i) => alpha[i]! / Math.max(nu, Math.sqrt(dist2(z, v))));
    z = refMean(vs, beta);
  }
  return z;
}
const expectClose = (got: number[], want: number[], tol = 1e-5) => {
  expect(got).toHaveLength(want.length);
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i]!) / Math.max(1, Math.abs(want[i]!))));
  expect(worst).toBeLessThan(tol);
};

describe("robust aggregation rules against float64 references", () => {
  it("the coordinate-wise median, odd and even counts, and the trimmed mean", () => {
    for (const n of [7, 10]) {
      const vs = randomUpdates(n, n);
      expectClose(readAll(run({ rule: { name: "median" } }, vs).aggregate), refMedian(vs));
      // β = 0.2 cuts ⌊0.2 n⌋ at each end (1 of 7, 2 of 10).
      expectClose(readAll(run({ rule: { name: "trimmed-mean", trim: 0.2 } }, vs).aggregate), refTrimmed(vs, Math.floor(0.2 * n)));
    }
    // A trim of 0 is the unweighted mean; the weighted mean is the plain rule.
    const vs = randomUpdates(6, 3);
    expectClose(
      readAll(run({ rule: { name: "trimmed-mean", trim: 0 } }, vs).aggregate),
      refMean(
        vs,
        vs.map(() => 1),
      ),
    );
    expectClose(readAll(run({ rule: { name: "mean" } }, vs).aggregate), refMean(vs, [1, 2, 3, 4, 5, 6]));
  });

  it("Krum selects the update of least score; Multi-Krum averages the n − f best; Bulyan trims Krum's picks", () => {
    // Two far updates among clustered ones: Krum's scores rank them last.
    const vs = [...randomUpdates(9, 11, 0.1), ...randomUpdates(3, 12, 5)];
    for (const [config, m] of [
      [{ rule: { name: "krum", byzantine: 3 } }, 1],
      [{ rule: { name: "multi-krum", byzantine: 3 } }, 9],
      [{ rule: { name: "multi-krum", byzantine: 3, select: 4 } }, 4],
    ] as const) {
      const { aggregate, report } = run(config, vs);
      const want = refKrum(vs, 3, m);
      expect(report.krum!.selected).toEqual(want.selected);
      expect(report.krum!.selected.every((i) => i < 9)).toBe(true);
      expectClose(readAll(aggregate), want.mean);
    }
    // Bulyan: n ≥ 4f + 3; odd and even counts of picks and of values kept (θ 5, 8, 5, 7, 8; β 5, 6, 3, 3, 4: at 6
    // of 8, some coordinates take every value on one side of the median), and f 0 (the unweighted mean).
    for (const [n, f] of [
      [5, 0],
      [10, 1],
      [7, 1],
      [11, 2],
      [12, 2],
    ] as const) {
      const us = [...randomUpdates(n - f, 13 + n, 0.3), ...randomUpdates(f, 14 + n, 3)];
      const { aggregate, report } = run({ rule: { name: "bulyan", byzantine: f } }, us);
      const want = refBulyan(us, f);
      expect(report.krum!.selected).toEqual(want.selected);
      expectClose(readAll(aggregate), want.mean);
    }
    // Krum is the selected update itself, values exact.
    const krum = run({ rule: { name: "krum", byzantine: 3 } }, vs);
    expect(readAll(krum.aggregate)).toEqual(Array.from(vs[krum.report.krum!.selected[0]!]!));
  });

  it("the geometric median: the reference's Weiszfeld steps, and at convergence a point where the objective's gradient vanishes", () => {
    const vs = randomUpdates(8, 21);
    const w = [3, 1, 4, 1, 5, 9, 2, 6];
    const few = run({ rule: { name: "geometric-median", maxIterations: 3, tolerance: 0 } }, vs, w);
    expect(few.report.geometricMedian!.iterations).toBe(3);
    expectClose(readAll(few.aggregate), refWeiszfeld(vs, w, 3));
    const { aggregate, report } = run({ rule: { name: "geometric-median", maxIterations: 500, tolerance: 1e-12 } }, vs, w);
    const z = readAll(aggregate);
    const objective = report.geometricMedian!.objective;
    // The objective falls every step (Weiszfeld's descent property) and below each update's own.
    for (let i = 1; i < objective.length; i++) expect(objective[i]!).toBeLessThanOrEqual(objective[i - 1]! * (1 + 1e-9));
    const alpha = w.map((x) => x / w.reduce((a, b) => a + b, 0));
    const objectiveAt = (p: ArrayLike<number>) => vs.reduce((s, v, i) => s + alpha[i]! * Math.sqrt(dist2(p, v)), 0);
    expect(objective.at(-1)!).toBeCloseTo(objectiveAt(z), 5);
    for (const v of vs) expect(objectiveAt(z)).toBeLessThan(objectiveAt(v));
    // First-order optimality: Σ α_i (z − x_i) / ‖z − x_i‖ ≈ 0.
    const gradient = Array.from({ length: D }, (_, j) =>
      vs.reduce((s, v, i) => s + (alpha[i]! * (z[j]! - v[j]!)) / Math.sqrt(dist2(z, v)), 0),
    );
    expect(norm(gradient)).toBeLessThan(1e-4);
  });

  it("norm bounding, fixed or at the median norm, and weight caps, before any rule", () => {
    const vs = randomUpdates(5, 31).map((v, i) => v.map((x) => x * (i + 1)));
    const w = [10, 20, 30, 40, 1e9];
    const norms = vs.map(norm);
    const scaled = (bound: number) => vs.map((v, i) => v.map((x) => (norms[i]! > bound ? (x * bound) / norms[i]! : x)));
    const fixed = run({ rule: { name: "mean" }, normBound: { bound: 6 } }, vs, w);
    expect(fixed.report.normBound!.bound).toBe(6);
    expect(fixed.report.normBound!.clipped).toBe(norms.filter((x) => x > 6).length);
    expect(fixed.report.normBound!.norms.map((x, i) => x / norms[i]!)).toEqual(norms.map(() => expect.closeTo(1, 6)));
    expectClose(readAll(fixed.aggregate), refMean(scaled(6), w));
    const atMedian = run({ rule: { name: "mean" }, normBound: { bound: "median" }, weights: { cap: 25 } }, vs, w);
    const sorted = [...norms].sort((a, b) => a - b);
    expect(atMedian.report.normBound!.bound).toBeCloseTo(sorted[2]!, 5);
    expect(atMedian.report.normBound!.clipped).toBe(2);
    expectClose(readAll(atMedian.aggregate), refMean(scaled(sorted[2]!), [10, 20, 25, 25, 25]));
    expectClose(readAll(run({ rule: { name: "mean" }, weights: "uniform" }, vs, w).aggregate), refMean(vs, [1, 1, 1, 1, 1]));
  });

  it("reads at most its budget of update values at a time", () => {
    const vs = randomUpdates(6, 41);
    const base = arrayUpdateSet(
      vs,
      vs.map(() => 1),
    );
    let widest = 0;
    const watched: UpdateSet = {
      ...base,
      weight: base.weight,
      read(i, start, out) {
        widest = Math.max(widest, out.length);
        base.read(i, start, out);
      },
    };
    for (const rule of [{ name: "median" }, { name: "krum", byzantine: 1 }, { name: "geometric-median" }] as const) {
      widest = 0;
      readAll(robustAggregate({ rule, normBound: { bound: "median" } }, watched, { budgetBytes: 4 * 6 * 4 }).aggregate);
      // At most 4 values of each of the 6 updates when a rule reads them all at once (16 bytes each), 8 of
      // one update when it averages them one by one (a float32 and a float64 sum per value): never more.
      expect(widest).toBeLessThanOrEqual(8);
    }
    const seen: number[] = [];
    forBlocks(base, 3, 20, 4 * 6 * 5, (start, blocks) => seen.push(start, blocks[0]!.length));
    expect(seen).toEqual([3, 5, 8, 5, 13, 5, 18, 2]);
  });

  it("refuses what it cannot compute, with the reason", () => {
    const vs = randomUpdates(6, 51);
    const refuse = (config: RobustConfig, message: RegExp) => {
      const call = () => run(config, vs);
      expect(call).toThrow(FlError);
      expect(call).toThrow(message);
    };
    refuse({ rule: { name: "krum", byzantine: 2 } }, /6 updates cannot outvote 2 attackers; it needs more than 6/);
    refuse({ rule: { name: "trimmed-mean", trim: 0.5 } }, /trim is a fraction in \[0, 0.5\)/);
    refuse({ rule: { name: "multi-krum", byzantine: 1, select: 7 } }, /select is a whole number in \[1, 6\]/);
    refuse({ rule: { name: "bulyan", byzantine: 1 } }, /bulyan: 6 updates cannot outvote 1 attackers; it needs at least 7/);
    refuse({ rule: { name: "geometric-median", smoothing: 0 } }, /smoothing > 0/);
    refuse({ rule: { name: "mean" }, normBound: { bound: -1 } }, /the bound must be >= 0/);
  });
});

describe("robust rules against synthetic attacks (20 clients, 4 attackers, honest updates near 1)", () => {
  const honest = randomUpdates(16, 61, 0.1).map((v) => v.map((x) => x + 1));
  const honestMean = refMean(
    honest,
    honest.map(() => 1),
  );
  const attacks: Record<string, Float32Array[]> = {
    "sign flip ×10": honest.slice(0, 4).map((v) => v.map((x) => -10 * x)),
    "scaling ×100": honest.slice(0, 4).map((v) => v.map((x) => 100 * x)),
    "gaussian σ 200": randomUpdates(4, 62, 200),
  };
  const rules: RobustConfig[] = [
    { rule: { name: "median" } },
    { rule: { name: "trimmed-mean", trim: 0.2 } },
    { rule: { name: "krum", byzantine: 4 } },
    { rule: { name: "multi-krum", byzantine: 4 } },
    { rule: { name: "bulyan", byzantine: 4 } },
    { rule: { name: "geometric-median" }, weights: "uniform" },
  ];
  for (const [attack, bad] of Object.entries(attacks))
    it(`${attack}: the mean is pulled far off; every rule stays near the honest mean`, () => {
      const vs = [...honest, ...bad];
      const ones = vs.map(() => 1);
      expect(Math.sqrt(dist2(readAll(run({ rule: { name: "mean" } }, vs, ones).aggregate), honestMean))).toBeGreaterThan(5);
      for (const config of rules) {
        const got = readAll(run(config, vs, ones).aggregate);
        // The honest updates' spread: each coordinate's std 0.1, so √37 · 0.1 ≈ 0.6 per update.
        expect(Math.sqrt(dist2(got, honestMean)), config.rule.name).toBeLessThan(0.6);
      }
    });

  it("inflated example counts: the weighted mean follows the attacker; capped weights or an unweighted rule do not", () => {
    const vs = [...honest, ...randomUpdates(4, 63, 0.1).map((v) => v.map((x) => x - 5))];
    const w = [...honest.map(() => 100), 1e9, 1e9, 1e9, 1e9];
    expect(Math.sqrt(dist2(readAll(run({ rule: { name: "mean" } }, vs, w).aggregate), honestMean))).toBeGreaterThan(25);
    // Capped, every weight is 100: the unweighted mean, which the 4 attackers move by their share alone.
    expectClose(
      readAll(run({ rule: { name: "mean" }, weights: { cap: 100 } }, vs, w).aggregate),
      refMean(
        vs,
        vs.map(() => 1),
      ),
    );
    expect(Math.sqrt(dist2(readAll(run({ rule: { name: "median" } }, vs, w).aggregate), honestMean))).toBeLessThan(0.6);
  });
});
