// A round's heterogeneous-rank aggregate over its kept updates (the aggregator keeps them as a robust round's,
// src/fl/robust/update-set.ts), one LoRA module at a time. Each update is a client's change lifted into the
// global rank R: u_k = pad(trunc_k(G) + δ_k) − G, so the client's factors are W_k = G + u_k, zero past its rank.
// The aggregate is the change of G the strategy then applies:
// - HetLoRA (Cho et al. 2024): Σ p_k u_k with p_k = ‖B_k A_k‖_F / Σ_j ‖B_j A_j‖_F per module, each norm capped
//   at the module's median (sparsityWeights' cap), so the next G is the sparsity-weighted mean of the
//   zero-padded factors;
// - FlexLoRA (Bai et al. 2024): the rank-R truncated SVD of Σ p_k B_k A_k (p_k the example weights) minus G,
//   so each client's truncation of the next G is the SVD at its own rank;
// - FLoRA (Wang et al. 2024), whose uploads are fresh factors trained on top of G (u_k those, zero-padded):
//   the rank-R truncated SVD of B_G A_G + Σ p_k B_k A_k minus G. FLoRA stacks exactly and merges the stack into
//   the base; the clients' bases here are quantized and shared, so the stack is cut back to rank R instead,
//   and the round reports the share of it the cut dropped.
// Memory: one module's factors for every update at once, in float64 (creation bounds it: moduleBytes).
import { FlError } from "../errors.ts";
import type { FlatSource, FlatTensor } from "../flat-tensors.ts";
import type { UpdateSet, VectorStore } from "../robust/update-set.ts";
import { type LoraFactors, type ModuleShape, sparsityWeights, svdRedistribute } from "./rules.ts";

export type HeteroRule = "hetlora" | "flexlora" | "flora";

/** One LoRA module of the layout: its A (R × in) and B (out × R) tensors. */
export interface LoraModule {
  a: FlatTensor;
  b: FlatTensor;
  shape: ModuleShape;
  r: number;
}

/** What the rule did, for the round's result. */
export type HeteroReport = {
  rule: HeteroRule;
  /** HetLoRA: each update's weight, the mean over the modules. */
  weights?: number[];
  /**
   * FlexLoRA, FLoRA: the largest share of a module's ΔW the rank-R truncation dropped, ‖tail‖_F / ‖ΔW‖_F (0 when
   * the stacked rank fits in R).
   */
  truncation?: number;
};

/**
 * Bytes one module's close holds for `updates` updates: `moduleFactors`' float64 changes and factors, and with an
 * SVD, about 64 bytes more a stacked rank and a row or column: the stack, ml-matrix's copies for its QR, both Q
 * factors and their products with the core's singular vectors, in float64.
 */
export const moduleBytes = (m: { shape: ModuleShape; r: number }, updates: number, svd: boolean) =>
  (2 * 8 + (svd ? 64 : 0)) * updates * m.r * (m.shape.in + m.shape.out);

const read = (source: { read(start: number, out: Float32Array): void }, t: FlatTensor) => {
  const out = new Float32Array(t.length);
  source.read(t.start, out);
  return out;
};

/** Update i's change u and its factors G + u, for one module, in float64. */
function moduleFactors(set: UpdateSet, m: LoraModule, g: { a: Float32Array; b: Float32Array }) {
  return Array.from({ length: set.count }, (_, i) => {
    const ua = Float64Array.from(read({ read: (s, o) => set.read(i, s, o) }, m.a));
    const ub = Float64Array.from(read({ read: (s, o) => set.read(i, s, o) }, m.b));
    const factors: LoraFactors = { r: m.r, a: ua.map((x, j) => x + g.a[j]!), b: ub.map((x, j) => x + g.b[j]!) };
    return { change: { r: m.r, a: ua, b: ub }, factors };
  });
}

/** Writes the round's aggregate (the change of G) into `out`, module by module; every tensor of the layout is in a module. */
export function heteroAggregate(
  rule: HeteroRule,
  set: UpdateSet,
  modules: readonly LoraModule[],
  global: FlatSource,
  out: VectorStore,
): HeteroReport {
  if (set.count === 0) throw new FlError("robust_invalid", `${rule}: a round with no updates has no aggregate`);
  const covered = modules.reduce((n, m) => n + m.a.length + m.b.length, 0);
  if (covered !== set.total) throw new FlError("tensor_mismatch", `${rule}: the modules hold ${covered} values, the updates ${set.total}`);
  const weightSums = new Float64Array(set.count);
  let truncation = 0;
  const total = Array.from({ length: set.count }, (_, i) => set.weight(i)).reduce((a, b) => a + b, 0);
  for (const m of modules) {
    const g = { a: read(global, m.a), b: read(global, m.b) };
    const updates = moduleFactors(set, m, g);
    const factors = updates.map((u) => u.factors);
    let next: { a: Float64Array; b: Float64Array };
    if (rule === "hetlora") {
      const p = sparsityWeights(factors, m.shape, "median");
      p.forEach((x, i) => (weightSums[i]! += x));
      next = { a: new Float64Array(m.a.length), b: new Float64Array(m.b.length) };
      updates.forEach((u, i) => {
        u.change.a.forEach((x, j) => (next.a[j]! += p[i]! * x));
        u.change.b.forEach((x, j) => (next.b[j]! += p[i]! * x));
      });
    } else {
      const p = factors.map((_, i) => set.weight(i) / total);
      // FLoRA: the version's product plus the stack of the clients' fresh factors (their uploads, padded).
      const g64 = { r: m.r, a: Float64Array.from(g.a), b: Float64Array.from(g.b) };
      const [stacked, weights] =
        rule === "flora"
          ? [
              [g64, ...updates.map((u) => u.change)],
              [1, ...p],
            ]
          : [factors, p];
      const { factors: svd, singular } = svdRedistribute(stacked, weights, m.shape, [m.r]);
      const energy = singular.reduce((s, x) => s + x * x, 0);
      const tail = singular.slice(m.r).reduce((s, x) => s + x * x, 0);
      if (energy > 0) truncation = Math.max(truncation, Math.sqrt(tail / energy));
      const f = svd.get(m.r)!;
      next = { a: f.a.map((x, j) => x - g.a[j]!), b: f.b.map((x, j) => x - g.b[j]!) };
    }
    out.write(m.a.start, Float32Array.from(next.a));
    out.write(m.b.start, Float32Array.from(next.b));
  }
  return rule === "hetlora" ? { rule, weights: [...weightSums].map((x) => x / modules.length) } : { rule, truncation };
}
