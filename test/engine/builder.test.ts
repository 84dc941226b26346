import { describe, expect, it } from "vitest";
import { GraphBuilder, GraphValidationError } from "../../src/engine/onnx/builder.ts";
import { ElemType, encodeModel } from "../../src/engine/onnx/proto.ts";
import { buildLlamaGraph } from "../../src/engine/llama/graph.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

describe("GraphBuilder", () => {
  it("encodes the same graph to the same bytes, whatever the order attributes are given in", () => {
    const build = (attrs: Record<string, number>) => {
      const g = new GraphBuilder("g");
      const x = g.input("x", ElemType.FLOAT, ["n", 4]);
      g.op("Gemm", [x, g.constant(ElemType.FLOAT, Array(16).fill(1), [4, 4])], attrs, { outputs: ["y"] });
      g.output("y", ElemType.FLOAT);
      return g.toBytes();
    };
    expect(build({ transA: 0, transB: 1 })).toEqual(build({ transB: 1, transA: 0 }));
    expect(build({ transA: 0, transB: 1 })).not.toEqual(build({ transA: 0, transB: 0 }));
  });

  it("gives a Llama model the same bytes twice", () => {
    const c = tinyConfig();
    const w = tinyWeights(c);
    const bytes = () => encodeModel(buildLlamaGraph(c, w, { kind: "forward", quant: "int4" }));
    expect(bytes()).toEqual(bytes());
  });

  it("stores equal constants once", () => {
    const g = new GraphBuilder("g");
    expect(g.ints(1, 2)).toBe(g.ints(1, 2));
    expect(g.ints(1, 2)).not.toBe(g.ints(2, 1));
    expect(g.initializers).toHaveLength(2);
  });

  it("refuses a value read before it is defined, a name defined twice, and an output never produced", () => {
    const g = new GraphBuilder("g");
    g.op("Relu", ["nowhere"]);
    expect(() => g.toBytes()).toThrow(GraphValidationError);
    expect(() => g.toBytes()).toThrow(/reads "nowhere" before it is defined/);
    const h = new GraphBuilder("h");
    h.input("x", ElemType.FLOAT, [1]);
    expect(() => h.input("x", ElemType.FLOAT, [1])).toThrow(/defined twice/);
    h.output("y", ElemType.FLOAT);
    expect(() => h.toBytes()).toThrow(/output "y" is never produced/);
  });

  it("writes attributes of every kind that onnxruntime reads back", async () => {
    const g = new GraphBuilder("attrs");
    const x = g.input("x", ElemType.FLOAT, [2, 3]);
    const y = g.op("LeakyRelu", [x], { alpha: { float: 0.5 } });
    const z = g.op("Transpose", [y], { perm: [1, 0] });
    g.op("Cast", [z], { to: ElemType.INT64 }, { outputs: ["out"] });
    g.output("out", ElemType.INT64, [3, 2]);
    const s = await ortNodeRuntime().createSession(g.toBytes());
    const r = await s.run({ x: { data: Float32Array.from([1, -2, 3, -4, 5, -6]), dims: [2, 3] } });
    expect(r.out!.dims).toEqual([3, 2]);
    expect(Array.from(r.out!.data as BigInt64Array, Number)).toEqual([1, -2, -1, 5, 3, -3]);
  });
});
