import { describe, expect, it } from "vitest";
import { FedflareError } from "../../src/errors.ts";
import { FlError } from "../../src/fl/errors.ts";
import { foldDelta, meanOf, weightedMean, weightedMetricMean } from "../../src/fl/weighted-mean.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { expectFlError, expectTensors, plain, tm } from "./helpers.ts";

/** Deterministic values in [-2, 2) (a small LCG), so the test is the same on every run. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 4 - 2;
  };
}

describe("foldDelta / meanOf", () => {
  it("computes the example-weighted mean of two deltas, by hand", () => {
    // Global [1,2,3]; client A trained to [2,2,3] on 1 example, client B to [1,5,3] on 3 examples.
    // ΔA = [1,0,0], ΔB = [0,3,0]; sum = 1·ΔA + 3·ΔB = [1,9,0]; mean = sum / 4 = [0.25, 2.25, 0].
    let sum = foldDelta(null, tm({ w: [1, 0, 0] }), 1);
    expect(plain(sum)).toEqual({ w: [1, 0, 0] });
    sum = foldDelta(sum, tm({ w: [0, 3, 0] }), 3);
    expect(plain(sum)).toEqual({ w: [1, 9, 0] });
    expect(plain(meanOf(sum, 4))).toEqual({ w: [0.25, 2.25, 0] });
  });

  it("copies the first delta and adds later ones in place", () => {
    const first = tm({ a: [1, 2], b: [3] });
    const sum = foldDelta(null, first, 2);
    expect(sum).not.toBe(first);
    expect(sum.get("a")).not.toBe(first.get("a"));
    expect(plain(first)).toEqual({ a: [1, 2], b: [3] }); // the delta is left alone
    const a = sum.get("a");
    const again = foldDelta(sum, tm({ a: [0.5, 0.5], b: [-1] }), 4);
    expect(again).toBe(sum);
    expect(again.get("a")).toBe(a);
    // [2,4] + 4·[0.5,0.5] = [4,6]; [6] + 4·[-1] = [2]
    expect(plain(sum)).toEqual({ a: [4, 6], b: [2] });
  });

  it("equals the non-streaming weighted mean for 5 clients with unequal weights", () => {
    const next = lcg(7);
    const weights = [1, 7, 3, 12, 5];
    const results = weights.map((weight) => ({
      weight,
      delta: tm({ "lora_A.weight": Array.from({ length: 6 }, next), "lora_B.weight": Array.from({ length: 4 }, next) }),
    }));
    let sum: TensorMap | null = null;
    for (const { delta, weight } of results) sum = foldDelta(sum, delta, weight);
    const streamed = meanOf(sum!, 28); // 1 + 7 + 3 + 12 + 5
    const direct = weightedMean(results);
    // An independent reference in float64, element by element.
    const expected: Record<string, number[]> = {};
    for (const name of ["lora_A.weight", "lora_B.weight"]) {
      const n = results[0]!.delta.get(name)!.length;
      expected[name] = Array.from({ length: n }, (_, i) => results.reduce((acc, r) => acc + r.weight * r.delta.get(name)![i]!, 0) / 28);
    }
    expectTensors(direct, expected, 1e-7);
    expectTensors(streamed, expected, 1e-6);
    // Not a plain mean: the unweighted mean of element 0 differs from the weighted one.
    const unweighted = results.reduce((acc, r) => acc + r.delta.get("lora_A.weight")![0]!, 0) / 5;
    expect(Math.abs(unweighted - expected["lora_A.weight"]![0]!)).toBeGreaterThan(1e-3);
  });

  it("with equal weights is the plain mean", () => {
    // ([1,2] + [3,-2] + [5,3]) / 3 = [3, 1]
    let sum: TensorMap | null = null;
    for (const d of [
      [1, 2],
      [3, -2],
      [5, 3],
    ])
      sum = foldDelta(sum, tm({ w: d }), 10);
    expect(plain(meanOf(sum!, 30))).toEqual({ w: [3, 1] });
    expect(
      plain(
        weightedMean(
          [
            [1, 2],
            [3, -2],
            [5, 3],
          ].map((d) => ({ delta: tm({ w: d }), weight: 10 })),
        ),
      ),
    ).toEqual({ w: [3, 1] });
  });
});

describe("refusals", () => {
  const sum = () => foldDelta(null, tm({ a: [1, 2, 3], b: [4, 5] }), 1);

  it("refuses a missing, an extra and a resized tensor, naming it", () => {
    expectFlError(() => foldDelta(sum(), tm({ a: [1, 2, 3] }), 1), "tensor_mismatch", '"b"', "missing");
    expectFlError(() => foldDelta(sum(), tm({ a: [1, 2, 3], b: [4, 5], c: [0] }), 1), "tensor_mismatch", '"c"', "unexpected");
    expectFlError(() => foldDelta(sum(), tm({ a: [1, 2], b: [4, 5] }), 1), "tensor_mismatch", '"a"', "2 elements", "expected 3");
    expectFlError(
      () =>
        weightedMean([
          { delta: tm({ a: [1] }), weight: 1 },
          { delta: tm({ x: [1] }), weight: 1 },
        ]),
      "tensor_mismatch",
      '"a"',
    );
  });

  it("refuses NaN and infinities naming the tensor and index, and leaves the sum as it was", () => {
    const s = sum();
    const err = expectFlError(() => foldDelta(s, tm({ a: [0, 0, 0], b: [1, NaN] }), 1), "non_finite", '"b"', "index 1", "NaN");
    expect(err).toBeInstanceOf(FedflareError);
    expectFlError(() => foldDelta(s, tm({ a: [0, -Infinity, 0], b: [0, 0] }), 1), "non_finite", '"a"', "index 1", "-Infinity");
    expectFlError(() => foldDelta(null, tm({ a: [Infinity] }), 1), "non_finite", '"a"', "index 0");
    expect(plain(s)).toEqual({ a: [1, 2, 3], b: [4, 5] });
  });

  it("refuses a fold that would overflow float32, changing nothing", () => {
    const s = foldDelta(null, tm({ a: [1, 3e38] }), 1);
    expectFlError(() => foldDelta(s, tm({ a: [1, 3e38] }), 1), "non_finite", '"a"', "index 1");
    expect(s.get("a")![0]).toBe(1);
    expectFlError(() => foldDelta(null, tm({ a: [3e38] }), 10), "non_finite", '"a"');
  });

  it("refuses weights that are not finite and > 0", () => {
    for (const w of [0, -1, NaN, Infinity]) expectFlError(() => foldDelta(null, tm({ a: [1] }), w), "weight_invalid", String(w));
    expectFlError(() => meanOf(sum(), 0), "weight_invalid");
    expectFlError(() => weightedMean([]), "weight_invalid");
  });
});

describe("weightedMetricMean", () => {
  it("weights each metric by the number of examples", () => {
    // loss = (10·2 + 30·1) / 40 = 1.25; accuracy = (10·0.5 + 30·0.9) / 40 = 0.8
    const out = weightedMetricMean([
      { numExamples: 10, metrics: { loss: 2, accuracy: 0.5 } },
      { numExamples: 30, metrics: { loss: 1, accuracy: 0.9 } },
    ]);
    expect(out.loss).toBeCloseTo(1.25, 12);
    expect(out.accuracy).toBeCloseTo(0.8, 12);
  });

  it("averages a metric over the clients that report it", () => {
    // loss over all three: (20 + 30 + 60·0.5) / 100 = 0.8; accuracy over the first two only: 0.8
    const out = weightedMetricMean([
      { numExamples: 10, metrics: { loss: 2, accuracy: 0.5 } },
      { numExamples: 30, metrics: { loss: 1, accuracy: 0.9 } },
      { numExamples: 60, metrics: { loss: 0.5 } },
    ]);
    expect(out.loss).toBeCloseTo(0.8, 12);
    expect(out.accuracy).toBeCloseTo(0.8, 12);
    expect(Object.keys(out).sort()).toEqual(["accuracy", "loss"]);
  });

  it("gives {} for no results and refuses bad weights and non-finite metrics", () => {
    expect(weightedMetricMean([])).toEqual({});
    expectFlError(() => weightedMetricMean([{ numExamples: 0, metrics: { loss: 1 } }]), "weight_invalid", "result 0");
    const err = expectFlError(
      () =>
        weightedMetricMean([
          { numExamples: 1, metrics: { loss: 1 } },
          { numExamples: 2, metrics: { loss: NaN } },
        ]),
      "non_finite",
      "result 1",
      '"loss"',
    );
    expect(err).toBeInstanceOf(FlError);
  });
});
