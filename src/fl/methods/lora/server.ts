// LoRA's aggregator side: version 0 is PEFT's initialisation (B = 0, so the global model starts as the
// base model) in PEFT's layout, and an upload is a safetensors delta of exactly the version's tensors.
import type { LlamaConfig } from "../../../engine/config.ts";
import { linearName, linearShape, type LinearModule } from "../../../engine/llama/names.ts";
import { initLoraParams } from "../../../engine/lora/init.ts";
import { graphName, writePeftAdapter } from "../../../engine/lora/peft.ts";
import { MethodError } from "../errors.ts";
import type { ServerMethod } from "../method.ts";
import { wholeModel } from "../shared/versions.ts";
import type { Footprint } from "../../../engine/client-plan.ts";
import { encodeTensorFile } from "../../tensor-file.ts";
import { adapterConfigOf, moduleRank, versionPairs } from "./adapter.ts";
import { LoraConfig } from "./config.ts";
import { checkHetero, heteroAggregation, heteroUploads, largestRank, truncateVersion } from "./hetero.ts";

/** The decoder layers holding LoRA: from fromLayer up. */
export function loraLayers(m: LoraConfig, model: LlamaConfig): number[] {
  if (m.fromLayer >= model.numLayers)
    throw new MethodError("method_invalid", `method.fromLayer ${m.fromLayer} leaves no layer of the ${model.numLayers} with LoRA`);
  return Array.from({ length: model.numLayers - m.fromLayer }, (_, i) => m.fromLayer + i);
}

/** A client offloading the trunk below `cut`: the layers above it, from the trunk's hidden states. */
export function splitFootprint(model: LlamaConfig, cut: number): Footprint {
  return { layers: Array.from({ length: model.numLayers - cut }, (_, i) => cut + i), embeds: false, trains: true };
}

export const loraServer: ServerMethod<LoraConfig> = {
  type: "lora",
  config: LoraConfig,
  frozen: (m) => (m.freezeA ? (tensor) => tensor.endsWith(".lora_A.weight") : null),
  compressible: true,
  perClient: heteroUploads,
  aggregation: heteroAggregation,
  versionFloats(m, model) {
    checkHetero(m);
    return loraLayers(m, model).reduce(
      (n, l) =>
        n +
        m.targetModules.reduce(
          (k, t) => k + moduleRank(m, linearName(l, t as LinearModule)) * linearShape(model, t as LinearModule).reduce((a, b) => a + b, 0),
          0,
        ),
      0,
    );
  },
  views: {
    /** The version as a client of rank r trains it (method.hetero): each A's first r rows, each B's first r columns. */
    rank: {
      params: ["r"],
      read(m, versions, version, { r = 0 }) {
        const largest = largestRank(m);
        if (r < 1 || r > largest) throw new MethodError("view_invalid", `r must be a rank from 1 to the version's ${largest}, not ${r}`);
        const tensors = versions.tensors(version);
        const shapes = new Map(
          [...tensors].map(([name, t]) => {
            // The module's name as the patterns are matched everywhere else: the graph's, without PEFT's prefix.
            const rank = moduleRank(m, graphName(name).slice(0, -".lora_A.weight".length));
            return [name, name.endsWith(".lora_A.weight") ? [rank, t.length / rank] : [t.length / rank, rank]];
          }),
        );
        const cut = truncateVersion({ tensors, shapes, metadata: {} }, r);
        return encodeTensorFile(cut.tensors, cut.shapes, { format: "pt", rank: String(r), version: String(version) });
      },
    },
  },
  // Locally every layer; offloaded (fromLayer > 0) only those above the cut, from the trunk's hidden states.
  footprints: (m, model) => ({
    local: wholeModel(model, true),
    ...(m.fromLayer > 0 ? { endpoint: splitFootprint(model, m.fromLayer) } : {}),
  }),
  // The whole model on the client, then each cut with the layers above it on the client.
  planRows: (model) => [
    { label: "local", footprint: wholeModel(model, true) },
    ...Array.from({ length: model.numLayers - 1 }, (_, i) => ({
      label: `cut ${i + 1}`,
      footprint: splitFootprint(model, i + 1),
      cut: i + 1,
    })),
  ],
  initial(m, federation, model) {
    const params = initLoraParams(model, m.r, m.targetModules as LinearModule[], federation.seed, m.fromLayer, (linear) =>
      moduleRank(m, linear),
    );
    const files = writePeftAdapter({
      config: adapterConfigOf(m, federation.model.name, m.fromLayer > 0 ? loraLayers(m, model) : null),
      pairs: versionPairs(m, params),
    });
    return { tensors: files["adapter_model.safetensors"], description: files["adapter_config.json"] };
  },
};
