import * as v from "valibot";
import { int, labels, labelWords, wordPerLabel } from "../shared/config-fields.ts";

/**
 * Offsite-tuning (Xiao, Lin and Han 2023): clients fully fine-tune the adapter — the bottom `bottom` and
 * top `top` decoder layers — on an emulator that keeps `middle` of the layers between, uniformly. The
 * operator supplies version 0 (the owner's adapter tensors) and hands clients the emulator.
 */
export const OffsiteConfig = v.pipe(
  v.strictObject({
    type: v.literal("offsite"),
    bottom: int(0, 1000),
    top: int(0, 1000),
    middle: int(0, 1000),
    /**
     * For a classification task whose completions are " " + label: clients train each example's gold label
     * word, the softmax over the label words only (shared/label-word-training.ts), and versions are scored by
     * those words. One token a word.
     */
    labels: v.optional(labels),
    labelWords,
  }),
  wordPerLabel(),
);
export type OffsiteConfig = v.InferOutput<typeof OffsiteConfig>;
