// Matrix products. Backward products are written as Gemm with transA/transB where the operands are
// 2-D (cheaper than an explicit Transpose: docs/ARCHITECTURE.md, "Runtime facts").
import type { GradContext, GradRule } from "../rule.ts";

/** The last two axes swapped. */
function transposeLast(c: GradContext, v: string): string {
  const r = c.rank(v);
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
  return c.g.op("Transpose", [v], { perm });
}

/** Y = A B (batched, numpy broadcasting): dA = G B^T, dB = A^T G, each summed back to its shape. */
export const matMul: GradRule = {
  opType: "MatMul",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    const [a, b] = [c.input(0), c.input(1)];
    if (c.rank(a) < 2 || c.rank(b) < 2) throw new Error(`MatMul ${c.node.name}: gradients of 1-D operands are not supported`);
    if (c.rank(a) === 2 && c.rank(b) === 2)
      return [c.needsGrad(0) ? c.g.op("Gemm", [g, b], { transB: 1 }) : null, c.needsGrad(1) ? c.g.op("Gemm", [a, g], { transA: 1 }) : null];
    return [
      c.needsGrad(0) ? c.unbroadcast(c.g.op("MatMul", [g, transposeLast(c, b)]), 0) : null,
      c.needsGrad(1) ? c.unbroadcast(c.g.op("MatMul", [transposeLast(c, a), g]), 1) : null,
    ];
  },
};

/**
 * Y = alpha op(A) op(B) + beta C. With op(A) = A^tA and op(B) = B^tB:
 * dA = alpha (tA ? op(B) G^T : G op(B)^T), dB = alpha (tB ? G^T op(A) : op(A)^T G), dC = beta G summed.
 */
export const gemm: GradRule = {
  opType: "Gemm",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    const [a, b] = [c.input(0), c.input(1)];
    const tA = c.attr("transA", 0);
    const tB = c.attr("transB", 0);
    const alpha = c.attr("alpha", { float: 1 }).float;
    const beta = c.attr("beta", { float: 1 }).float;
    const scaled = (v: string, s: number) => (s === 1 ? v : c.g.op("Mul", [v, c.g.scalar(s)]));
    let da: string | null = null;
    let db: string | null = null;
    if (c.needsGrad(0)) da = tA ? c.g.op("Gemm", [b, g], { transA: tB, transB: 1 }) : c.g.op("Gemm", [g, b], { transB: tB ? 0 : 1 });
    if (c.needsGrad(1)) db = tB ? c.g.op("Gemm", [g, a], { transA: 1, transB: tA }) : c.g.op("Gemm", [a, g], { transA: tA ? 0 : 1 });
    const grads = [da && scaled(da, alpha), db && scaled(db, alpha)];
    if (c.node.inputs.length > 2 && c.input(2) !== "") grads.push(c.needsGrad(2) ? c.unbroadcast(scaled(g, beta), 2) : null);
    return grads;
  },
};
