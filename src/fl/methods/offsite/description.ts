// What an offsite-tuning federation's versions hold, as the coordinator serves it beside each version
// (adapter_config.json) and `fedflare offsite` writes it beside an adapter: the split and its layers.
import { firstIssue } from "../../../errors.ts";
import * as v from "valibot";
import { FlError } from "../../errors.ts";
import type { OffsiteLayout, OffsiteSplit } from "./emulator.ts";

const layers = v.array(v.pipe(v.number(), v.integer(), v.minValue(0)));
const count = v.pipe(v.number(), v.integer(), v.minValue(0));

export const OffsiteDescription = v.strictObject({
  method: v.literal("offsite"),
  base_model: v.string(),
  bottom: count,
  top: count,
  middle: count,
  adapter_layers: layers,
  emulator_layers: layers,
});
export type OffsiteDescription = v.InferOutput<typeof OffsiteDescription>;

export function describeOffsite(baseModel: string, split: OffsiteSplit, layout: OffsiteLayout): OffsiteDescription {
  return {
    method: "offsite",
    base_model: baseModel,
    bottom: split.bottom,
    top: split.top,
    middle: split.middle,
    adapter_layers: layout.adapter,
    emulator_layers: layout.emulator,
  };
}

export function parseOffsiteDescription(json: unknown, where: string): OffsiteDescription {
  const r = v.safeParse(OffsiteDescription, json);
  if (!r.success) throw new FlError("adapter_invalid", firstIssue(r.issues, `${where}: not an offsite-tuning adapter description`));
  return r.output;
}
