// LoRA with per-client ranks (issue 21), the aggregator's side against float64 references written here: a
// rank-r_k upload, read in its own layout and lifted, is pad(trunc_k(G) + δ_k) − G value for value;
// HetLoRA's aggregate is the per-module sparsity-weighted mean of the zero-padded factors (each norm capped at
// the module's median, so inflating one's factors buys no weight); FlexLoRA's next
// version is the rank-R SVD of the example-weighted mean product, and its truncation to each client's rank
// that rank's SVD (errors the singular values' tails).
import { Matrix, SingularValueDecomposition } from "ml-matrix";
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { type FlatSource, flatLayout, tensorFileSource } from "../../src/fl/flat-tensors.ts";
import { heteroAggregate } from "../../src/fl/hetero/aggregation.ts";
import { layoutAt, liftedUpdate, loraModules, truncateVersion } from "../../src/fl/methods/lora/hetero.ts";
import { arrayUpdateSet, memoryVector } from "../../src/fl/robust/update-set.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";

const R = 4;
// Two modules: one narrower than the clients' stacked rank (a dense SVD), one wider (the stack's QR).
const MODULES = [
  { name: "model.layers.0.self_attn.q_proj", in: 6, out: 5 },
  { name: "model.layers.0.self_attn.v_proj", in: 12, out: 10 },
];
const RANKS = [2, 4, 3];
const EXAMPLES = [5, 2, 9];
const aName = (m: string) => `${m}.lora_A.weight`;
const bName = (m: string) => `${m}.lora_B.weight`;

const u = seededUniform(3);
const shapes = new Map<string, number[]>();
const tensors = new Map<string, Float32Array>();
for (const m of MODULES) {
  shapes.set(aName(m.name), [R, m.in]);
  shapes.set(bName(m.name), [m.out, R]);
  tensors.set(aName(m.name), normalSamples(u, R * m.in, 0.3));
  tensors.set(bName(m.name), normalSamples(u, m.out * R, 0.3));
}
const versionBytes = encodeTensorFile(tensors, shapes);
const G = decodeTensorFile(versionBytes, "version");
const layout = flatLayout(readSafetensorsHeader(versionBytes));
const globalSource: FlatSource = {
  total: layout.total,
  read(start, out) {
    for (const t of layout.tensors) {
      const from = Math.max(start, t.start);
      const to = Math.min(start + out.length, t.start + t.length);
      for (let i = from; i < to; i++) out[i - start] = G.tensors.get(t.name)![i - t.start]!;
    }
  },
};

/** Each client's change of its truncated version (δ_k, its own shapes). */
const deltas = RANKS.map((r) => {
  const cut = truncateVersion(G, r);
  return new Map([...cut.tensors].map(([name, t]) => [name, normalSamples(u, t.length, 0.1)]));
});
const bodies = RANKS.map((r, k) => encodeTensorFile(deltas[k]!, truncateVersion(G, r).shapes, { num_examples: String(EXAMPLES[k]) }));

/** Client k's zero-padded factors of one module, pad(trunc_k(G) + δ_k), in float64, from the definitions. */
function paddedFactors(k: number, m: (typeof MODULES)[number]): { a: number[][]; b: number[][] } {
  const r = RANKS[k]!;
  const ga = G.tensors.get(aName(m.name))!;
  const gb = G.tensors.get(bName(m.name))!;
  const da = deltas[k]!.get(aName(m.name))!;
  const db = deltas[k]!.get(bName(m.name))!;
  const a = Array.from({ length: R }, (_, j) =>
    Array.from({ length: m.in }, (_, i) => (j < r ? ga[j * m.in + i]! + da[j * m.in + i]! : 0)),
  );
  const b = Array.from({ length: m.out }, (_, o) => Array.from({ length: R }, (_, j) => (j < r ? gb[o * R + j]! + db[o * r + j]! : 0)));
  return { a, b };
}
const productOf = (f: { a: number[][]; b: number[][] }) =>
  f.b.map((row) => Array.from({ length: f.a[0]!.length }, (_, i) => row.reduce((s, x, j) => s + x * f.a[j]![i]!, 0)));
const frobenius = (x: number[][]) => Math.sqrt(x.flat().reduce((s, v) => s + v * v, 0));
const minus = (x: number[][], y: number[][]) => x.map((row, o) => row.map((v, i) => v - y[o]![i]!));

/** Each upload read in its client's layout and lifted into rank R, as the aggregator reads it. */
const lifted = RANKS.map((r, k) => {
  const own = layoutAt(layout, r);
  const { source } = tensorFileSource(bodies[k]!, own, 4096, "upload");
  const out = new Float32Array(layout.total);
  const lift = liftedUpdate(source, own, layout, globalSource);
  // Read in odd pieces, so every piece boundary inside a tensor (and a B row) is crossed.
  for (let s = 0; s < layout.total; s += 7) lift.read(s, out.subarray(s, Math.min(layout.total, s + 7)));
  return out;
});

/** Module m's factors (R ranks) from a flat vector: its A and its B. */
function factorsOf(flat: Float32Array, m: (typeof MODULES)[number]): { a: number[][]; b: number[][] } {
  const [ta, tb] = [aName(m.name), bName(m.name)].map((n) => layout.tensors.find((t) => t.name === n)!);
  const a = Array.from({ length: R }, (_, j) => Array.from({ length: m.in }, (_, i) => flat[ta!.start + j * m.in + i]!));
  const b = Array.from({ length: m.out }, (_, o) => Array.from({ length: R }, (_, j) => flat[tb!.start + o * R + j]!));
  return { a, b };
}
const globalFlat = new Float32Array(layout.total);
globalSource.read(0, globalFlat);
const plus = (x: Float32Array, y: Float32Array) => x.map((v, i) => v + y[i]!);

describe("per-client ranks on the aggregator", () => {
  it("lifts a rank-r_k upload into rank R as the change from G to the client's zero-padded factors", () => {
    for (const [k] of RANKS.entries())
      for (const m of MODULES) {
        const want = paddedFactors(k, m);
        const got = factorsOf(plus(globalFlat, lifted[k]!), m);
        expect(Math.max(...minus(got.a, want.a).flat().map(Math.abs), ...minus(got.b, want.b).flat().map(Math.abs))).toBeLessThan(1e-6);
      }
    // A full-rank client's upload is its change, unchanged.
    const own = layoutAt(layout, 4);
    expect(own).toEqual(layout);
  });

  it("refuses an upload in another rank's shape", () => {
    expect(() => tensorFileSource(bodies[0]!, layoutAt(layout, 3), 4096, "upload")).toThrow(/has shape \[2,6\], expected \[3,6\]/);
  });

  it("HetLoRA: per module, the zero-padded factors weighted by ‖B_k A_k‖_F (capped at the median) over their sum", () => {
    const out = memoryVector(layout.total);
    const report = heteroAggregate("hetlora", arrayUpdateSet(lifted, EXAMPLES), loraModules(layout), globalSource, out);
    const next = new Float32Array(layout.total);
    out.read(0, next);
    const meanWeights = [0, 0, 0];
    for (const m of MODULES) {
      const padded = RANKS.map((_, k) => paddedFactors(k, m));
      // Each norm capped at the module's median (of three: the middle one).
      const norms = padded.map((f) => frobenius(productOf(f)));
      const median = [...norms].sort((a, b) => a - b)[1]!;
      const capped = norms.map((n) => Math.min(n, median));
      const p = capped.map((n) => n / capped.reduce((a, b) => a + b, 0));
      expect(capped).not.toEqual(norms);
      p.forEach((x, k) => (meanWeights[k]! += x / MODULES.length));
      const want = {
        a: padded[0]!.a.map((row, j) => row.map((_, i) => padded.reduce((s, f, k) => s + p[k]! * f.a[j]![i]!, 0))),
        b: padded[0]!.b.map((row, o) => row.map((_, j) => padded.reduce((s, f, k) => s + p[k]! * f.b[o]![j]!, 0))),
      };
      const got = factorsOf(plus(globalFlat, next), m);
      expect(Math.max(...minus(got.a, want.a).flat().map(Math.abs), ...minus(got.b, want.b).flat().map(Math.abs))).toBeLessThan(1e-6);
      // Not the example-weighted mean: the weights matter here.
      expect(Math.abs(p[0]! - EXAMPLES[0]! / 16)).toBeGreaterThan(0.01);
    }
    expect(report.weights!.map((x) => Number(x.toFixed(9)))).toEqual(meanWeights.map((x) => Number(x.toFixed(9))));
    expect(report.weights!.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  it("FLoRA: fresh factors padded, and the next version the rank-R SVD of B_G A_G + Σ p_k B_k A_k", () => {
    // The same bodies read as FLoRA's uploads: each client's fresh factors (δ_k here), zero-padded to rank R.
    const fresh = RANKS.map((r, k) => {
      const own = layoutAt(layout, r);
      const out = new Float32Array(layout.total);
      liftedUpdate(tensorFileSource(bodies[k]!, own, 4096, "upload").source, own, layout, globalSource, true).read(0, out);
      return out;
    });
    const freshFactors = (k: number, m: (typeof MODULES)[number]) => {
      const r = RANKS[k]!;
      const da = deltas[k]!.get(aName(m.name))!;
      const db = deltas[k]!.get(bName(m.name))!;
      return {
        a: Array.from({ length: R }, (_, j) => Array.from({ length: m.in }, (_, i) => (j < r ? da[j * m.in + i]! : 0))),
        b: Array.from({ length: m.out }, (_, o) => Array.from({ length: R }, (_, j) => (j < r ? db[o * r + j]! : 0))),
      };
    };
    for (const [k] of RANKS.entries())
      for (const m of MODULES) {
        const got = factorsOf(fresh[k]!, m);
        const want = freshFactors(k, m);
        expect(Math.max(...minus(got.a, want.a).flat().map(Math.abs), ...minus(got.b, want.b).flat().map(Math.abs))).toBe(0);
      }
    const out = memoryVector(layout.total);
    const report = heteroAggregate("flora", arrayUpdateSet(fresh, EXAMPLES), loraModules(layout), globalSource, out);
    const next = new Float32Array(layout.total);
    out.read(0, next);
    const total = EXAMPLES.reduce((a, b) => a + b, 0);
    let worstShare = 0;
    for (const m of MODULES) {
      const g = productOf(factorsOf(globalFlat, m));
      const products = RANKS.map((_, k) => productOf(freshFactors(k, m)));
      const dW = g.map((row, o) => row.map((x, i) => x + products.reduce((s, pr, k) => s + (EXAMPLES[k]! / total) * pr[o]![i]!, 0)));
      const sigma = new SingularValueDecomposition(new Matrix(dW), { autoTranspose: true }).diagonal;
      const tail = Math.sqrt(sigma.slice(R).reduce((s, x) => s + x * x, 0));
      worstShare = Math.max(worstShare, tail / frobenius(dW));
      expect(frobenius(minus(productOf(factorsOf(plus(globalFlat, next), m)), dW))).toBeCloseTo(tail, 4);
    }
    expect(worstShare).toBeGreaterThan(0.01);
    expect(report.truncation).toBeCloseTo(worstShare, 5);
  });

  it("FlexLoRA: the next version is the rank-R SVD of Σ p_k B_k A_k, and its truncation to r_k that rank's SVD", () => {
    const out = memoryVector(layout.total);
    const report = heteroAggregate("flexlora", arrayUpdateSet(lifted, EXAMPLES), loraModules(layout), globalSource, out);
    const next = new Float32Array(layout.total);
    out.read(0, next);
    let worstShare = 0;
    for (const m of MODULES) {
      const products = RANKS.map((_, k) => productOf(paddedFactors(k, m)));
      const total = EXAMPLES.reduce((a, b) => a + b, 0);
      const dW = products[0]!.map((row, o) => row.map((_, i) => products.reduce((s, pr, k) => s + (EXAMPLES[k]! / total) * pr[o]![i]!, 0)));
      const sigma = new SingularValueDecomposition(new Matrix(dW), { autoTranspose: true }).diagonal;
      const tail = (r: number) => Math.sqrt(sigma.slice(r).reduce((s, x) => s + x * x, 0));
      worstShare = Math.max(worstShare, tail(R) / frobenius(dW));
      const got = factorsOf(plus(globalFlat, next), m);
      for (const r of [...new Set([...RANKS, R])]) {
        const cut = { a: got.a.slice(0, r), b: got.b.map((row) => row.slice(0, r)) };
        expect(frobenius(minus(productOf(cut), dW))).toBeCloseTo(tail(r), 4);
      }
    }
    expect(worstShare).toBeGreaterThan(0.01);
    expect(report.truncation).toBeCloseTo(worstShare, 5);
  });
});
