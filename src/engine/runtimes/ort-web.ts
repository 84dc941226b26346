import type { InferenceSession } from "onnxruntime-common";
import * as ort from "onnxruntime-web/wasm";
import { ortRuntime, type Runtime } from "../runtime.ts";

/** onnxruntime-web's session options, in a Worker as in Node. */
export const WEB_SESSION: InferenceSession.SessionOptions = { executionProviders: ["wasm"] };

/** onnxruntime-web's WASM build on one thread, in the main thread: what a Worker can run. */
export function ortWebRuntime(): Runtime {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  // A Worker's memory includes the WASM heap's peak: weights go in as external data, copied once.
  return ortRuntime("ort-web", ort as never, WEB_SESSION, true);
}

export { ort as ortWeb };
