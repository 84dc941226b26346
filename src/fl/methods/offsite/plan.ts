import type { LlamaConfig } from "../../../engine/config.ts";
import type { GradientPlan } from "../../client/local-update.ts";
import type { LabelWordTraining } from "../shared/label-word-training.ts";
import type { OffsiteConfig } from "./config.ts";
import { adapterTensorNames, offsiteLayout } from "./emulator.ts";

/**
 * Offsite-tuning fully trains the adapter's layers on the emulator's layers (Xiao et al. 2023); it loads only
 * those. With `words` (method.labels), on each example's gold label word alone.
 */
export function offsitePlan(m: OffsiteConfig, c: LlamaConfig, words: LabelWordTraining | null = null): GradientPlan {
  const layout = offsiteLayout(c.numLayers, m);
  const spec = { full: adapterTensorNames(c, layout), ...(words ? { vocabulary: words.vocabulary } : {}) };
  return {
    graph: { kind: "train", spec, layerIndices: layout.emulator },
    layers: layout.emulator,
    ...(words ? { examples: words.examples } : {}),
  };
}
