import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../onnx/builder.ts";
import { ElemType } from "../onnx/proto.ts";
import { ortRuntime, type Runtime } from "../runtime.ts";

export type NodeProvider = "cuda" | "cpu";

/**
 * onnxruntime-node on the CPU (or CUDA). `qdq_matmulnbits_accuracy_level` 0 keeps the MatMulNBits
 * fusion of quantized weights exact (its default quantizes activations: errors near 1e-2).
 */
export function ortNodeRuntime(threads = 1, provider: NodeProvider = "cpu"): Runtime {
  return ortRuntime("ort-node", ort as never, {
    executionProviders: provider === "cuda" ? ["cuda", "cpu"] : ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    extra: { session: { qdq_matmulnbits_accuracy_level: "0" } },
  });
}

/** CUDA when this onnxruntime-node install has its CUDA provider and the machine's CUDA libraries load, else CPU. */
export async function detectNodeProvider(): Promise<NodeProvider> {
  // onnxruntime-node's install script fetches the CUDA provider only where asked (ONNXRUNTIME_NODE_INSTALL_CUDA).
  const bin = join(dirname(createRequire(import.meta.url).resolve("onnxruntime-node")), "..", "bin");
  if (!readdirSync(bin, { recursive: true }).some((f) => String(f).endsWith("libonnxruntime_providers_cuda.so"))) return "cpu";
  const g = new GraphBuilder("probe");
  const x = g.input("x", ElemType.FLOAT, [1]);
  g.op("Identity", [x], {}, { outputs: ["y"] });
  g.output("y", ElemType.FLOAT, [1]);
  try {
    // A build without the CUDA provider logs its failed load: expected here, not worth a line.
    await (ort.InferenceSession.create as (m: Uint8Array, o: object) => Promise<unknown>)(g.toBytes(), {
      executionProviders: ["cuda"],
      logSeverityLevel: 4,
    });
    return "cuda";
  } catch {
    return "cpu";
  }
}
