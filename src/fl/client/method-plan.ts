// What a client builds for a federation's method: the training graph's trainable tensors, which decoder
// layers the graph runs, and which layers the client therefore loads at all.
import type { LlamaConfig } from "../../engine/config.ts";
import type { SplitGraph, SplitSpec, TrainGraph } from "../../engine/llama/graph.ts";
import type { LinearModule } from "../../engine/llama/names.ts";
import { loraScaling } from "../../engine/lora/peft.ts";
import type { Method } from "../../protocol/federation.ts";
import { FlError } from "../errors.ts";
import { adapterTensorNames, offsiteLayout } from "../offsite/emulator.ts";

export interface MethodPlan {
  /** The training graph: from a cut (the trunk's states are inputs), or on an emulator's layers by original index. */
  graph: TrainGraph | SplitGraph;
  /** The decoder layers to load (all when absent): no client holds weights its graph never runs. */
  layers?: number[];
  /** The cut, when the trunk below it runs at an endpoint. */
  cut?: number;
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/**
 * LoRA runs every layer, or with `offloaded` only those from its fromLayer (the endpoint serves the trunk
 * below). Offsite-tuning fully trains the adapter's layers on the emulator's layers (Xiao et al. 2023).
 */
export function methodPlan(method: Method, c: LlamaConfig, opts: { offloaded: boolean; seed: number }): MethodPlan {
  if (method.type === "offsite") {
    if (opts.offloaded)
      throw new FlError("strategy_invalid", "offsite-tuning runs the whole emulator on the client; it has no trunk to offload");
    const layout = offsiteLayout(c.numLayers, method);
    return {
      graph: { kind: "train", spec: { full: adapterTensorNames(c, layout) }, layerIndices: layout.emulator },
      layers: layout.emulator,
    };
  }
  if (method.type === "fedkseed" || method.type === "fedbpt" || method.type === "discrete")
    throw new FlError("strategy_invalid", `${method.type} is a black-box method: it has no training graph to plan`);
  const spec: SplitSpec = {
    lora: {
      r: method.r,
      scaling: loraScaling({ r: method.r, alpha: method.alpha, useRslora: method.rslora }),
      modules: method.targetModules as LinearModule[],
      dropout: method.dropout,
      seed: opts.seed,
      fromLayer: method.fromLayer,
    },
  };
  if (!opts.offloaded) return { graph: { kind: "train", spec } };
  if (method.fromLayer === 0)
    throw new FlError("strategy_invalid", "offloading the trunk needs the method's fromLayer above 0 (LoRA only above the cut)");
  return {
    graph: { kind: "split", spec, fromLayer: method.fromLayer },
    layers: range(method.fromLayer, c.numLayers),
    cut: method.fromLayer,
  };
}

/**
 * The decoder layers a client loads for a method (all when undefined); FedKSeed and FedBPT run the whole
 * model. A discrete-prompt client loads none: it asks an API and holds only the tokenizer.
 */
export function loadedLayers(method: Method, c: LlamaConfig, offloaded: boolean): number[] | undefined {
  if (method.type === "discrete")
    throw new FlError(
      "strategy_invalid",
      "a discrete-prompt client scores prompts at an inference API: it loads no weights, only the tokenizer",
    );
  if (method.type === "fedkseed" || method.type === "fedbpt") return undefined;
  return methodPlan(method, c, { offloaded, seed: 0 }).layers;
}
