// The float32 MatMul ceiling of an ONNX runtime: one MatMul [m, k] x [k, n] with the activation as graph
// input and the weight as initializer, as in the models; benchmarks time it in turns with their work.
// The graph returns the product's sum, not the product: copying an [m, n] float32 output out of the
// session (16 MiB for [1024, 4096]) took longer than the MatMul and made the "ceiling" slower than whole
// models, whose outputs are small.
import { normalSamples } from "../../src/engine/llama/init.ts";
import { GraphBuilder } from "../../src/engine/onnx/builder.ts";
import { ElemType } from "../../src/engine/onnx/proto.ts";
import type { Runtime } from "../../src/engine/runtime.ts";
import { seededUniform } from "../../src/engine/sampling.ts";

export interface Ceiling {
  run: () => Promise<void>;
  release: () => Promise<void>;
}

export async function ortMatMul(rt: Runtime, m: number, k: number, n: number): Promise<Ceiling> {
  const next = seededUniform(2);
  const g = new GraphBuilder("matmul");
  const a = g.input("a", ElemType.FLOAT, [m, k]);
  const b = g.initializer("b", ElemType.FLOAT, [k, n], new Uint8Array(normalSamples(next, k * n, 1).buffer));
  g.op("ReduceSum", [g.op("MatMul", [a, b])], { keepdims: 0 }, { outputs: ["y"] });
  g.output("y", ElemType.FLOAT, []);
  const session = await rt.createSession(g.toBytes());
  const feeds = { a: { data: normalSamples(next, m * k, 1), dims: [m, k] } };
  return { run: async () => void (await session.run(feeds)), release: () => session.release() };
}
