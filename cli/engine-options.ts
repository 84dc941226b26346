// Options shared by the commands that run a model: where it is, an adapter, the runtime, quantization.
import { ModelError } from "../src/engine/errors.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import type { ForwardGraph, StepGraph } from "../src/engine/llama/graph.ts";
import { loadPeftAdapter } from "../src/engine/lora/peft.ts";
import { loadModel, type LoadedModel } from "../src/engine/model-files.ts";
import type { QuantMode } from "../src/engine/quantize.ts";
import type { Runtime } from "../src/engine/runtime.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../src/engine/runtimes/ort-web.ts";
import { dirSource } from "./model-dir.ts";
import { threads as threadCount } from "./numbers.ts";
import { UsageError } from "./usage.ts";

export const ENGINE_OPTIONS = {
  model: { type: "string" },
  adapter: { type: "string" },
  runtime: { type: "string", default: "ort-node" },
  quant: { type: "string", default: "f32" },
  threads: { type: "string", default: "1" },
} as const;

export interface EngineValues {
  model?: string;
  adapter?: string;
  runtime: string;
  quant: string;
  threads: string;
}

export function pickRuntime(name: string, threads: string): Runtime {
  const n = threadCount(threads);
  if (name === "ort-node") return ortNodeRuntime(n);
  if (name === "ort-web") return ortWebRuntime();
  throw new UsageError(`--runtime must be ort-node or ort-web, got "${name}"`);
}

export function pickQuant(q: string): QuantMode {
  if (q === "f32" || q === "int8" || q === "int4") return q;
  throw new UsageError(`--quant must be f32, int8 or int4, got "${q}"`);
}

/** Loads the model (and adapter) named by the options and opens its forward graph. */
export async function openModel(
  values: EngineValues,
  graph: Pick<ForwardGraph, "kind" | "nll"> | Pick<StepGraph, "kind">,
): Promise<{ loaded: LoadedModel; forward: ForwardModel }> {
  if (!values.model) throw new UsageError("--model DIR is required (a Hugging Face model folder)");
  const runtime = pickRuntime(values.runtime, values.threads);
  const quant = pickQuant(values.quant);
  const loaded = await loadModel(dirSource(values.model));
  const lora = values.adapter ? (await loadPeftAdapter(dirSource(values.adapter), loaded.config)).pairs : undefined;
  if (lora && lora.size === 0) throw new ModelError("adapter_invalid", `${values.adapter}: the adapter has no LoRA tensors`);
  const forward = await ForwardModel.create(runtime, loaded.config, loaded.weights, { ...graph, quant, ...(lora ? { lora } : {}) });
  return { loaded, forward };
}
