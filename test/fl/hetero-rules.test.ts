// Heterogeneous-rank aggregation rules (issue 21) against float64 references computed here: FLoRA's stack
// reproduces Σ p_k B_k A_k exactly where the mean of the factors does not; zero-padding keeps a low-rank
// client's block and HetLoRA's weights are the products' norms over their sum; FlexLoRA's truncation error is
// the tail of the singular values.
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { type LoraFactors, product, productNorm, sparsityWeights, stack, svdRedistribute, zeroPadMean } from "../../src/fl/hetero/rules.ts";

const s = { in: 12, out: 9 };
const client = (r: number, seed: number): LoraFactors => ({
  r,
  a: Float64Array.from(normalSamples(seededUniform(seed), r * s.in, 1)),
  b: Float64Array.from(normalSamples(seededUniform(seed + 100), s.out * r, 1)),
});
const clients = [client(2, 1), client(4, 2), client(3, 3)];
const weights = [0.5, 0.3, 0.2];
/** Σ p_k B_k A_k, entry by entry, in float64. */
const want = new Float64Array(s.out * s.in);
clients.forEach((c, k) => {
  for (let o = 0; o < s.out; o++)
    for (let i = 0; i < s.in; i++) {
      let x = 0;
      for (let j = 0; j < c.r; j++) x += c.b[o * c.r + j]! * c.a[j * s.in + i]!;
      want[o * s.in + i]! += weights[k]! * x;
    }
});
const distance = (x: Float64Array, y: Float64Array) => Math.sqrt(x.reduce((t, v, i) => t + (v - y[i]!) ** 2, 0));

describe("heterogeneous-rank rules", () => {
  it("FLoRA's stack is exactly Σ p_k B_k A_k at rank Σ r_k; the zero-padded mean of the factors is not", () => {
    const stacked = stack(clients, weights, s);
    expect(stacked.r).toBe(9);
    expect(distance(product(stacked, s), want)).toBeLessThan(1e-12);
    const padded = zeroPadMean(clients, weights, s, 4);
    // The cross terms p_i p_j B_i A_j: far from the mean of the products.
    expect(distance(product(padded, s), want)).toBeGreaterThan(0.1 * Math.sqrt(want.reduce((t, v) => t + v * v, 0)));
  });

  it("zero-padding keeps each client's block, weighted; HetLoRA's weights are the products' norms over their sum", () => {
    const only = zeroPadMean([clients[0]!], [1], s, 4);
    for (let o = 0; o < s.out; o++) {
      expect(Array.from(only.b.subarray(o * 4, o * 4 + 2))).toEqual(Array.from(clients[0]!.b.subarray(o * 2, o * 2 + 2)));
      expect(Array.from(only.b.subarray(o * 4 + 2, o * 4 + 4))).toEqual([0, 0]);
    }
    expect(Array.from(only.a.subarray(0, 2 * s.in))).toEqual(Array.from(clients[0]!.a));
    expect(only.a.subarray(2 * s.in).every((x) => x === 0)).toBe(true);
    const w = sparsityWeights(clients, s);
    const norms = clients.map((c) => Math.sqrt(product(c, s).reduce((t, v) => t + v * v, 0)));
    w.forEach((x, k) => expect(x).toBeCloseTo(norms[k]! / norms.reduce((a, b) => a + b, 0), 12));
    expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(sparsityWeights([{ r: 1, a: new Float64Array(12), b: new Float64Array(9) }], s)).toEqual([1]);
  });

  it("FlexLoRA: each rank's factors reconstruct Σ p_k B_k A_k up to the tail of its singular values", () => {
    const { factors, singular } = svdRedistribute(clients, weights, s, [2, 4, 9]);
    expect(singular.length).toBe(9);
    for (const [r, f] of factors) {
      const tail = Math.sqrt(singular.slice(r).reduce((t, x) => t + x * x, 0));
      expect(distance(product(f, s), want)).toBeCloseTo(tail, 9);
    }
    // Rank Σ r_k = 9 is the whole: nothing lost.
    expect(distance(product(factors.get(9)!, s), want)).toBeLessThan(1e-9);
    expect(() => svdRedistribute(clients, weights, s, [10])).toThrow("rank 10 is above the module's 9");
  });

  it("FlexLoRA on a module wider than the stack (its SVD through the stack's QR, no in × out product) agrees with the dense SVD", () => {
    const wide = { in: 30, out: 25 };
    const f = (r: number, seed: number): LoraFactors => ({
      r,
      a: Float64Array.from(normalSamples(seededUniform(seed), r * wide.in, 1)),
      b: Float64Array.from(normalSamples(seededUniform(seed + 7), wide.out * r, 1)),
    });
    const few = [f(2, 11), f(3, 12)];
    const p = [0.25, 0.75];
    const dense = new Float64Array(wide.out * wide.in);
    few.forEach((c, k) => product(c, wide).forEach((x, i) => (dense[i]! += p[k]! * x)));
    const { factors, singular } = svdRedistribute(few, p, wide, [1, 3, 5, 8]);
    // The stack has rank 5: five singular values, and rank 5 (or more) reproduces the product.
    expect(singular.length).toBe(5);
    for (const [r, g] of factors) {
      const tail = Math.sqrt(singular.slice(r).reduce((t, x) => t + x * x, 0));
      expect(distance(product(g, wide), dense)).toBeCloseTo(tail, 9);
    }
    expect(distance(product(factors.get(8)!, wide), dense)).toBeLessThan(1e-9);
    // The Frobenius norm without the product, against the product's.
    for (const c of [...few, ...clients]) {
      const shape = c.a.length === c.r * wide.in ? wide : s;
      expect(productNorm(c, shape)).toBeCloseTo(Math.sqrt(product(c, shape).reduce((t, v) => t + v * v, 0)), 10);
    }
  });
});
