import { describe, expect, it } from "vitest";
import { addGradients, MissingGradientError } from "../../../src/engine/autodiff/driver.ts";
import { NON_DIFFERENTIABLE, RULES } from "../../../src/engine/autodiff/registry.ts";
import { GraphBuilder } from "../../../src/engine/onnx/builder.ts";
import { ElemType } from "../../../src/engine/onnx/proto.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { gradCheck, ints, randn, type Check } from "../../fixtures/gradcheck.ts";

type G = GraphBuilder;
const f = (g: G, name: string, dims: number[]) => g.input(name, g.floatType, dims);
const unary = (op: string, dims: number[], mean = 0, std = 1): Check => ({
  build: (g) => g.op(op, [f(g, "x", dims)]),
  feeds: { x: randn(dims, 3, std, mean) },
  wrt: ["x"],
});
const binary = (op: string, a: number[], b: number[], bMean = 0): Check => ({
  build: (g) => g.op(op, [f(g, "a", a), f(g, "b", b)]),
  feeds: { a: randn(a, 1), b: randn(b, 2, 0.3, bMean) },
  wrt: ["a", "b"],
});
const gemm = (transA: number, transB: number, alpha = 1, bias = false): Check => ({
  build: (g) =>
    g.op("Gemm", [f(g, "a", transA ? [4, 3] : [3, 4]), f(g, "b", transB ? [5, 4] : [4, 5]), ...(bias ? [f(g, "c", [5])] : [])], {
      transA,
      transB,
      alpha: { float: alpha },
    }),
  feeds: { a: randn(transA ? [4, 3] : [3, 4], 1), b: randn(transB ? [5, 4] : [4, 5], 2), ...(bias ? { c: randn([5], 3) } : {}) },
  wrt: bias ? ["a", "b", "c"] : ["a", "b"],
});

/** [case name, op type it checks, check]. */
const CASES: [string, string, Check][] = [
  ["Add, both sides broadcast", "Add", binary("Add", [2, 3, 4], [3, 1])],
  ["Sub, broadcast from rank 1", "Sub", binary("Sub", [2, 3], [3])],
  ["Mul, broadcast over leading axes", "Mul", binary("Mul", [2, 3, 4], [4])],
  ["Div by a broadcast positive column", "Div", binary("Div", [2, 3], [2, 1], 2)],
  [
    "Where, both branches",
    "Where",
    {
      build: (g) => g.op("Where", [g.op("Greater", [f(g, "c", [2, 3]), g.scalar(0)]), f(g, "a", [2, 3]), f(g, "b", [3])]),
      feeds: { c: randn([2, 3], 9), a: randn([2, 3], 1), b: randn([3], 2) },
      wrt: ["a", "b"],
    },
  ],
  ["Neg", "Neg", unary("Neg", [2, 3])],
  ["Identity", "Identity", unary("Identity", [4])],
  [
    "Cast float to float",
    "Cast",
    { build: (g) => g.op("Cast", [f(g, "x", [3])], { to: g.floatType }), feeds: { x: randn([3], 4) }, wrt: ["x"] },
  ],
  ["Sqrt of positive values", "Sqrt", unary("Sqrt", [2, 3], 2, 0.3)],
  ["Reciprocal of positive values", "Reciprocal", unary("Reciprocal", [2, 3], 2, 0.3)],
  ["Sigmoid", "Sigmoid", unary("Sigmoid", [2, 3])],
  ["Exp", "Exp", unary("Exp", [2, 3], 0, 0.5)],
  ["Sin", "Sin", unary("Sin", [2, 3])],
  ["Cos", "Cos", unary("Cos", [2, 3])],
  [
    "Softmax on the last axis",
    "Softmax",
    { build: (g) => g.op("Softmax", [f(g, "x", [2, 3, 5])], { axis: -1 }), feeds: { x: randn([2, 3, 5], 5) }, wrt: ["x"] },
  ],
  [
    "LogSoftmax on axis 1",
    "LogSoftmax",
    { build: (g) => g.op("LogSoftmax", [f(g, "x", [2, 5])], { axis: 1 }), feeds: { x: randn([2, 5], 6) }, wrt: ["x"] },
  ],
  [
    "ReduceSum without keepdims",
    "ReduceSum",
    { build: (g) => g.op("ReduceSum", [f(g, "x", [2, 3, 4]), g.ints(1)], { keepdims: 0 }), feeds: { x: randn([2, 3, 4], 7) }, wrt: ["x"] },
  ],
  [
    "ReduceMean keeping dims",
    "ReduceMean",
    {
      build: (g) => g.op("ReduceMean", [f(g, "x", [2, 3, 4]), g.ints(-1)], { keepdims: 1 }),
      feeds: { x: randn([2, 3, 4], 8) },
      wrt: ["x"],
    },
  ],
  [
    "MatMul, batched times broadcast matrix",
    "MatMul",
    {
      build: (g) => g.op("MatMul", [f(g, "a", [2, 3, 4]), f(g, "b", [4, 5])]),
      feeds: { a: randn([2, 3, 4], 1), b: randn([4, 5], 2) },
      wrt: ["a", "b"],
    },
  ],
  [
    "MatMul, 2-D",
    "MatMul",
    {
      build: (g) => g.op("MatMul", [f(g, "a", [3, 4]), f(g, "b", [4, 2])]),
      feeds: { a: randn([3, 4], 1), b: randn([4, 2], 2) },
      wrt: ["a", "b"],
    },
  ],
  ["Gemm", "Gemm", gemm(0, 0)],
  ["Gemm transB", "Gemm", gemm(0, 1)],
  ["Gemm transA", "Gemm", gemm(1, 0)],
  ["Gemm transA transB, alpha 0.5, bias", "Gemm", gemm(1, 1, 0.5, true)],
  ["Reshape", "Reshape", { build: (g) => g.op("Reshape", [f(g, "x", [2, 6]), g.ints(3, 4)]), feeds: { x: randn([2, 6], 1) }, wrt: ["x"] }],
  [
    "Unsqueeze",
    "Unsqueeze",
    { build: (g) => g.op("Unsqueeze", [f(g, "x", [2, 3]), g.ints(1)]), feeds: { x: randn([2, 3], 1) }, wrt: ["x"] },
  ],
  [
    "Squeeze",
    "Squeeze",
    { build: (g) => g.op("Squeeze", [f(g, "x", [2, 1, 3]), g.ints(1)]), feeds: { x: randn([2, 1, 3], 1) }, wrt: ["x"] },
  ],
  [
    "Transpose",
    "Transpose",
    { build: (g) => g.op("Transpose", [f(g, "x", [2, 3, 4])], { perm: [1, 2, 0] }), feeds: { x: randn([2, 3, 4], 1) }, wrt: ["x"] },
  ],
  ["Expand", "Expand", { build: (g) => g.op("Expand", [f(g, "x", [3, 1]), g.ints(2, 3, 4)]), feeds: { x: randn([3, 1], 1) }, wrt: ["x"] }],
  [
    "Concat of two differentiable inputs",
    "Concat",
    {
      build: (g) => g.op("Concat", [f(g, "a", [2, 2]), f(g, "b", [2, 3])], { axis: 1 }),
      feeds: { a: randn([2, 2], 1), b: randn([2, 3], 2) },
      wrt: ["a", "b"],
    },
  ],
  [
    "Split with one piece unused",
    "Split",
    {
      build: (g) => g.opN("Split", [f(g, "x", [2, 5]), g.ints(2, 3)], { axis: 1 }, { outputs: 2 })[1]!,
      feeds: { x: randn([2, 5], 1) },
      wrt: ["x"],
    },
  ],
  [
    "Gather rows with repeated indices",
    "Gather",
    {
      build: (g) => g.op("Gather", [f(g, "t", [5, 3]), g.input("i", ElemType.INT64, [4])], { axis: 0 }),
      feeds: { t: randn([5, 3], 1), i: ints([4, 1, 4, 0]) },
      wrt: ["t"],
    },
  ],
  [
    "GatherElements",
    "GatherElements",
    {
      build: (g) => g.op("GatherElements", [f(g, "t", [2, 4]), g.input("i", ElemType.INT64, [2, 3])], { axis: 1 }),
      feeds: { t: randn([2, 4], 1), i: ints([0, 3, 3, 1, 1, 2], [2, 3]) },
      wrt: ["t"],
    },
  ],
  [
    "Dropout in inference mode (the identity)",
    "Dropout",
    {
      build: (g) => g.opN("Dropout", [f(g, "x", [2, 3]), g.scalar(0.3), g.bool(false)], {}, { outputs: 2 })[0]!,
      feeds: { x: randn([2, 3], 1) },
      wrt: ["x"],
    },
  ],
];

describe("gradient rules", () => {
  it("registers every rule exactly once, none for a non-differentiable op", () => {
    const ops = RULES.map((r) => r.opType);
    expect(new Set(ops).size).toBe(ops.length);
    for (const op of ops) expect(NON_DIFFERENTIABLE.has(op)).toBe(false);
  });

  it("has a finite-difference case for every rule", () => {
    const checked = new Set(CASES.map(([, op]) => op));
    expect(RULES.map((r) => r.opType).filter((op) => !checked.has(op))).toEqual([]);
  });

  it.each(CASES)("%s: float32 gradient matches float64 central differences (rel ≤ 1e-3)", async (_, __, check) => {
    const { relError, fdNorm } = await gradCheck(check);
    for (const w of check.wrt) {
      expect(fdNorm[w]).toBeGreaterThan(1e-3);
      expect(relError[w]).toBeLessThan(1e-3);
    }
  });

  it("Dropout in training mode: the gradient is the kept mask times the upstream gradient over (1 - ratio)", async () => {
    const g = new GraphBuilder("dropout");
    const x = g.input("x", ElemType.FLOAT, [4, 50]);
    const r = g.input("r", ElemType.FLOAT, [4, 50]);
    const [y, mask] = g.opN("Dropout", [x, g.scalar(0.3), g.bool(true)], { seed: 7 }, { outputs: 2 });
    const loss = g.op("ReduceSum", [g.op("Mul", [y!, r])], { keepdims: 0 });
    const grad = addGradients(g, loss, [x]).get(x)!;
    g.op("Identity", [grad], {}, { outputs: ["dx"] });
    g.op("Cast", [mask!], { to: ElemType.FLOAT }, { outputs: ["kept"] });
    g.op("Identity", [y!], {}, { outputs: ["y"] });
    for (const o of ["dx", "kept", "y"]) g.output(o, ElemType.FLOAT);
    const xs = Float32Array.from(randn([200], 1).data);
    const rs = Float32Array.from(randn([200], 2).data);
    const out = await ortNodeRuntime()
      .createSession(g.toBytes())
      .then((s) => s.run({ x: { data: xs, dims: [4, 50] }, r: { data: rs, dims: [4, 50] } }));
    const kept = out.kept!.data as Float32Array;
    const dropped = kept.filter((k) => k === 0).length;
    expect(dropped).toBeGreaterThan(30);
    expect(dropped).toBeLessThan(90);
    (out.dx!.data as Float32Array).forEach((d, i) => expect(d).toBeCloseTo((kept[i]! * rs[i]!) / 0.7, 5));
    (out.y!.data as Float32Array).forEach((v, i) => expect(v).toBeCloseTo((kept[i]! * xs[i]!) / 0.7, 5));
  });

  it("names the op that has no rule", () => {
    const g = new GraphBuilder("g");
    const x = g.input("x", ElemType.FLOAT, [3]);
    const y = g.op("Tanh", [x]);
    const loss = g.op("ReduceSum", [y], { keepdims: 0 });
    expect(() => addGradients(g, loss, [x])).toThrow(MissingGradientError);
    expect(() => addGradients(g, loss, [x])).toThrow(/no gradient rule for op Tanh/);
  });

  it("gives zeros for a trainable input the loss does not use, and sums fan-out", async () => {
    const { relError } = await gradCheck({
      build: (g) => {
        const x = f(g, "x", [3]);
        f(g, "unused", [2]);
        return g.op("Add", [g.op("Mul", [x, x]), g.op("Sin", [x])]);
      },
      feeds: { x: randn([3], 1), unused: randn([2], 2) },
      wrt: ["x"],
    });
    expect(relError.x).toBeLessThan(1e-3);
  });
});
