import * as ort from "onnxruntime-node";
import { ortRuntime, type Runtime } from "../runtime.ts";

/**
 * onnxruntime-node on the CPU. `qdq_matmulnbits_accuracy_level` 0 keeps the MatMulNBits fusion of
 * quantized weights exact (its default quantizes activations: errors near 1e-2).
 */
export function ortNodeRuntime(threads = 1): Runtime {
  return ortRuntime("ort-node", ort as never, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    extra: { session: { qdq_matmulnbits_accuracy_level: "0" } },
  });
}
