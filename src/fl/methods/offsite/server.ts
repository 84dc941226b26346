// Offsite-tuning's aggregator side (Xiao et al. 2023): the versions are the adapter's layers under the
// full model's names; version 0 is the model owner's adapter, which only the operator has, so it is
// supplied after creation (PUT /federations/{id}/versions/0).
import type { LlamaConfig } from "../../../engine/config.ts";
import { MethodError } from "../errors.ts";
import type { ServerMethod } from "../method.ts";
import { configured, describe } from "../shared/versions.ts";
import { OffsiteConfig } from "./config.ts";
import { describeOffsite } from "./description.ts";
import { adapterShapes, offsiteLayout, type OffsiteLayout } from "./emulator.ts";

function layout(m: OffsiteConfig, model: LlamaConfig): OffsiteLayout {
  const l = configured("method", () => offsiteLayout(model.numLayers, m));
  if (l.adapter.length === 0) throw new MethodError("method_invalid", "method: the offsite adapter needs at least one bottom or top layer");
  return l;
}

export const offsiteServer: ServerMethod<OffsiteConfig> = {
  type: "offsite",
  config: OffsiteConfig,
  compressible: true,
  // The client trains on the emulator: the adapter's layers and the compressed middle.
  footprints: (m, model) => ({ local: { layers: layout(m, model).emulator, embeds: true, trains: true, full: true } }),
  // An emulator of the first and last layer and half the middle (Xiao et al. 2023 drop about half).
  planRows(model) {
    const m = { type: "offsite" as const, bottom: 1, top: 1, middle: Math.max(0, Math.floor((model.numLayers - 2) / 2)) };
    return [{ label: `emulator ${m.bottom}+${m.middle}+${m.top}`, footprint: this.footprints(m, model).local! }];
  },
  versionFloats: (m, model) => [...adapterShapes(model, layout(m, model)).values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0),
  initial: (m, federation, model) => ({
    tensors: null,
    description: describe(describeOffsite(federation.model.name, m, layout(m, model))),
  }),
  suppliedShapes: (m, model) => adapterShapes(model, layout(m, model)),
};
