import type { LlamaConfig } from "../../../engine/config.ts";
import type { GradientPlan } from "../../client/local-update.ts";
import type { OffsiteConfig } from "./config.ts";
import { adapterTensorNames, offsiteLayout } from "./emulator.ts";

/** Offsite-tuning fully trains the adapter's layers on the emulator's layers (Xiao et al. 2023); it loads only those. */
export function offsitePlan(m: OffsiteConfig, c: LlamaConfig): GradientPlan {
  const layout = offsiteLayout(c.numLayers, m);
  return {
    graph: { kind: "train", spec: { full: adapterTensorNames(c, layout) }, layerIndices: layout.emulator },
    layers: layout.emulator,
  };
}
