// Aggregation rules for LoRA adapters of different ranks (issue 21), over one module's clients: each client's
// A (r_k × in) and B (out × r_k), row-major, its scaling folded into B, and its weight p_k (the weights sum
// to 1). Averaging the factors is not averaging the products (B̄Ā ≠ Σ p_k B_k A_k: cross terms p_i p_j B_i A_j);
// each rule answers that differently:
// - zero-padding (HetLoRA, Cho et al. 2024): pad every client to the largest rank and average the factors,
//   with HetLoRA's sparsity weights p_k = ‖B_k A_k‖_F / Σ_j ‖B_j A_j‖_F in place of the data sizes;
// - stacking (FLoRA, Wang et al. 2024): A = vstack(p_k A_k), B = hstack(B_k), so B·A = Σ p_k B_k A_k exactly,
//   at rank Σ r_k;
// - SVD (FlexLoRA, Bai et al. 2024): ΔW = Σ p_k B_k A_k, redistributed to each rank r by its truncated SVD
//   (B = U_r Σ_r, A = V_rᵀ, as the paper has it: A orthonormal rows and B the scale, as LoRA starts from a
//   unit-scale A and a small B), whose error is the tail of the singular values. ΔW is never formed when the
//   stacked rank K = Σ r_k is below the module's sides: the SVD of the stack B·A = (Q_B R_B)(Q_A R_A)ᵀ is Q_B
//   times the SVD of the K × K core R_B R_Aᵀ times Q_Aᵀ (Halko et al. 2011, section 5.1), so a 4096 × 4096
//   module costs K² (in + out), not in · out.
import { Matrix, QrDecomposition, SingularValueDecomposition } from "ml-matrix";
import { FlError } from "../errors.ts";

export interface LoraFactors {
  /** r × in, row-major. */
  a: Float64Array;
  /** out × r, row-major. */
  b: Float64Array;
  r: number;
}

export interface ModuleShape {
  in: number;
  out: number;
}

function check(clients: readonly LoraFactors[], weights: readonly number[], s: ModuleShape): void {
  if (clients.length === 0 || clients.length !== weights.length)
    throw new FlError("tensor_mismatch", `${clients.length} clients' factors and ${weights.length} weights`);
  for (const c of clients)
    if (c.a.length !== c.r * s.in || c.b.length !== s.out * c.r)
      throw new FlError(
        "tensor_mismatch",
        `a rank-${c.r} client's factors are ${c.a.length} and ${c.b.length} values, not ${c.r * s.in} and ${s.out * c.r}`,
      );
}

/** B·A (out × in, row-major). */
export function product(f: LoraFactors, s: ModuleShape): Float64Array {
  const w = new Float64Array(s.out * s.in);
  for (let o = 0; o < s.out; o++)
    for (let k = 0; k < f.r; k++) {
      const bk = f.b[o * f.r + k]!;
      if (bk === 0) continue;
      for (let i = 0; i < s.in; i++) w[o * s.in + i]! += bk * f.a[k * s.in + i]!;
    }
  return w;
}

/**
 * ‖B·A‖_F without the product: ‖BA‖²_F = tr(BᵀB · AAᵀ), two r × r Gram matrices, r²(in + out) work and no
 * out × in buffer.
 */
export function productNorm(f: LoraFactors, s: ModuleShape): number {
  const { r } = f;
  let sum = 0;
  for (let j = 0; j < r; j++)
    for (let k = 0; k < r; k++) {
      let bb = 0;
      for (let o = 0; o < s.out; o++) bb += f.b[o * r + j]! * f.b[o * r + k]!;
      if (bb === 0) continue;
      let aa = 0;
      for (let i = 0; i < s.in; i++) aa += f.a[j * s.in + i]! * f.a[k * s.in + i]!;
      sum += bb * aa;
    }
  return Math.sqrt(Math.max(0, sum));
}

/**
 * HetLoRA's sparsity weights: each client's ‖B_k A_k‖_F over their sum (uniform when every product is zero).
 * `cap` "median": each norm first capped at the clients' median norm, so a client cannot buy weight by inflating
 * its factors (the paper's weights give one of three clients 0.99999 for B scaled by 1000), while a low-norm
 * update still counts less, the weights' purpose.
 */
export function sparsityWeights(clients: readonly LoraFactors[], s: ModuleShape, cap?: "median"): number[] {
  let norms = clients.map((c) => productNorm(c, s));
  if (cap) {
    const median = [...norms].sort((a, b) => a - b)[(norms.length - 1) >> 1]!;
    norms = norms.map((n) => Math.min(n, median));
  }
  const total = norms.reduce((a, b) => a + b, 0);
  return total === 0 ? clients.map(() => 1 / clients.length) : norms.map((n) => n / total);
}

/** Zero-padding to `rank` (at least every client's): the weighted mean of the padded factors. */
export function zeroPadMean(clients: readonly LoraFactors[], weights: readonly number[], s: ModuleShape, rank: number): LoraFactors {
  check(clients, weights, s);
  if (clients.some((c) => c.r > rank)) throw new FlError("tensor_mismatch", `a client's rank is above the padded rank ${rank}`);
  const a = new Float64Array(rank * s.in);
  const b = new Float64Array(s.out * rank);
  clients.forEach((c, k) => {
    const p = weights[k]!;
    for (let i = 0; i < c.a.length; i++) a[i]! += p * c.a[i]!;
    for (let o = 0; o < s.out; o++) for (let j = 0; j < c.r; j++) b[o * rank + j]! += p * c.b[o * c.r + j]!;
  });
  return { a, b, r: rank };
}

/** FLoRA's stacking: A = vstack(p_k A_k), B = hstack(B_k), rank Σ r_k; B·A = Σ p_k B_k A_k. */
export function stack(clients: readonly LoraFactors[], weights: readonly number[], s: ModuleShape): LoraFactors {
  check(clients, weights, s);
  const r = clients.reduce((n, c) => n + c.r, 0);
  const a = new Float64Array(r * s.in);
  const b = new Float64Array(s.out * r);
  let at = 0;
  clients.forEach((c, k) => {
    for (let i = 0; i < c.a.length; i++) a[at * s.in + i] = weights[k]! * c.a[i]!;
    for (let o = 0; o < s.out; o++) for (let j = 0; j < c.r; j++) b[o * r + at + j] = c.b[o * c.r + j]!;
    at += c.r;
  });
  return { a, b, r };
}

/** The SVD of Σ p_k B_k A_k: U (out × n), the singular values (n of them, descending) and V (in × n). */
function productSvd(
  clients: readonly LoraFactors[],
  weights: readonly number[],
  s: ModuleShape,
): { u: Matrix; singular: number[]; v: Matrix } {
  const k = clients.reduce((n, c) => n + c.r, 0);
  if (k >= Math.min(s.in, s.out)) {
    const w = new Float64Array(s.out * s.in);
    clients.forEach((c, i) => product(c, s).forEach((x, j) => (w[j]! += weights[i]! * x)));
    const rows = Array.from({ length: s.out }, (_, o) => Array.from(w.subarray(o * s.in, (o + 1) * s.in)));
    const svd = new SingularValueDecomposition(new Matrix(rows), { autoTranspose: true });
    return { u: svd.leftSingularVectors, singular: svd.diagonal, v: svd.rightSingularVectors };
  }
  // The stack: B = [p_1 B_1 | …] (out × K), Aᵀ = [A_1ᵀ | …] (in × K), so B·A = Σ p_k B_k A_k.
  const b = new Matrix(s.out, k);
  const at = new Matrix(s.in, k);
  let col = 0;
  clients.forEach((c, i) => {
    for (let j = 0; j < c.r; j++, col++) {
      for (let o = 0; o < s.out; o++) b.set(o, col, weights[i]! * c.b[o * c.r + j]!);
      for (let x = 0; x < s.in; x++) at.set(x, col, c.a[j * s.in + x]!);
    }
  });
  const qb = new QrDecomposition(b);
  const qa = new QrDecomposition(at);
  const core = new SingularValueDecomposition(qb.upperTriangularMatrix.mmul(qa.upperTriangularMatrix.transpose()));
  return {
    u: qb.orthogonalMatrix.mmul(core.leftSingularVectors),
    singular: core.diagonal,
    v: qa.orthogonalMatrix.mmul(core.rightSingularVectors),
  };
}

/**
 * FlexLoRA: ΔW = Σ p_k B_k A_k, and for each rank asked its truncated SVD's factors (B = U Σ, A = Vᵀ), with
 * the singular values, at most the stacked rank of them (their tail past a rank is the rank's reconstruction
 * error in the Frobenius norm).
 */
export function svdRedistribute(
  clients: readonly LoraFactors[],
  weights: readonly number[],
  s: ModuleShape,
  ranks: readonly number[],
): { factors: Map<number, LoraFactors>; singular: number[] } {
  check(clients, weights, s);
  for (const r of ranks)
    if (r > Math.min(s.in, s.out)) throw new FlError("tensor_mismatch", `rank ${r} is above the module's ${Math.min(s.in, s.out)}`);
  const { u, singular, v } = productSvd(clients, weights, s);
  const factors = new Map<number, LoraFactors>();
  for (const r of ranks) {
    const a = new Float64Array(r * s.in);
    const b = new Float64Array(s.out * r);
    // Past the stacked rank the product has no more directions: those factors stay zero.
    for (let j = 0; j < Math.min(r, singular.length); j++) {
      for (let o = 0; o < s.out; o++) b[o * r + j] = u.get(o, j) * singular[j]!;
      for (let i = 0; i < s.in; i++) a[j * s.in + i] = v.get(i, j);
    }
    factors.set(r, { a, b, r });
  }
  return { factors, singular };
}
