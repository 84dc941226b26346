import * as v from "valibot";
import { int } from "../shared/config-fields.ts";

/**
 * Offsite-tuning (Xiao, Lin and Han 2023): clients fully fine-tune the adapter — the bottom `bottom` and
 * top `top` decoder layers — on an emulator that keeps `middle` of the layers between, uniformly. The
 * operator supplies version 0 (the owner's adapter tensors) and hands clients the emulator.
 */
export const OffsiteConfig = v.strictObject({
  type: v.literal("offsite"),
  bottom: int(0, 1000),
  top: int(0, 1000),
  middle: int(0, 1000),
});
export type OffsiteConfig = v.InferOutput<typeof OffsiteConfig>;
