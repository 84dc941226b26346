import type { LlamaConfig } from "../../../engine/config.ts";
import type { LinearModule } from "../../../engine/llama/names.ts";
import { loraScaling } from "../../../engine/lora/peft.ts";
import type { GradientPlan } from "../../client/local-update.ts";
import { MethodError } from "../errors.ts";
import { patternModules } from "./adapter.ts";
import type { LoraConfig } from "./config.ts";
import { loraLayers } from "./server.ts";
import type { LabelWordTraining } from "../shared/label-word-training.ts";

/**
 * LoRA's training graph: every layer, or, offloaded, only those from its fromLayer (the endpoint serves
 * the trunk below and the client holds only the layers above the cut), at `rank`: the rank the client trains
 * (method.hetero: its own, or FLoRA's stack), the version's when absent; with `words`, on the label words only.
 */
export function loraPlan(
  m: LoraConfig,
  c: LlamaConfig,
  opts: { offloaded: boolean; seed: number; rank?: number; words?: LabelWordTraining | null },
): GradientPlan {
  const patterns = patternModules(m, loraLayers(m, c), opts.rank);
  const lora = {
    // A client of a lower rank (method.hetero) trains the version's first ranks at the version's scaling.
    r: opts.rank ?? m.r,
    scaling: loraScaling({ r: m.r, alpha: m.alpha, useRslora: m.rslora }),
    modules: m.targetModules as LinearModule[],
    dropout: m.dropout,
    // The seed draws dropout masks only: without dropout the graph, and its kept session, stay the same each round.
    ...(m.dropout > 0 ? { seed: opts.seed } : {}),
    fromLayer: m.fromLayer,
    ...(patterns ? { patterns } : {}),
  };
  // FFA-LoRA: A stays as the version has it (its shared initialisation).
  const frozen = m.freezeA ? { frozen: ".lora_A.weight" } : {};
  const words = opts.words ? { examples: opts.words.examples } : {};
  const spec = { lora, ...(opts.words ? { vocabulary: opts.words.vocabulary } : {}) };
  if (!opts.offloaded) return { graph: { kind: "train", spec }, ...frozen, ...words };
  if (m.fromLayer === 0)
    throw new MethodError("method_invalid", "offloading the trunk needs the method's fromLayer above 0 (LoRA only above the cut)");
  return { graph: { kind: "split", spec, fromLayer: m.fromLayer }, layers: loraLayers(m, c), cut: m.fromLayer, ...frozen, ...words };
}
