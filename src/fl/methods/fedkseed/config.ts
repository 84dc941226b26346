import * as v from "valibot";
import { LINEAR_MODULES } from "../../../engine/llama/names.ts";
import { int, labels, labelWords, upTo, wordPerLabel } from "../shared/config-fields.ts";

/**
 * FedKSeed (Qin et al. 2024): forward-only two-point zeroth-order steps along perturbations drawn from a
 * pool of `k` seeds fixed per federation; uploads are the per-seed sums of the step scalars, and every
 * version is the cumulative scalar per seed (the model: w0 - local.lr * sum_j c_j z_j). `pro` samples
 * seeds by their history (FedKSeed-Pro). `trains`: LoRA pairs (PEFT's initialisation from the federation
 * seed as w0) or whole tensors of the base model (w0 = the model's own).
 */
export const FedKSeedConfig = v.pipe(
  v.strictObject({
    type: v.literal("fedkseed"),
    k: v.optional(int(1, 1 << 20), 4096),
    epsilon: v.optional(upTo(1), 1e-3),
    direction: v.optional(v.picklist(["gaussian", "rademacher"]), "gaussian"),
    pro: v.optional(v.boolean(), false),
    /**
     * For a classification task whose completions are " " + label: the steps' loss is the verbalizer
     * cross-entropy over these labels' words (BBT) instead of the completion's NLL.
     */
    labels: v.optional(labels),
    labelWords,
    trains: v.variant("type", [
      v.strictObject({
        type: v.literal("lora"),
        r: int(1, 256),
        alpha: upTo(1e4),
        targetModules: v.pipe(v.array(v.picklist(LINEAR_MODULES)), v.minLength(1)),
        rslora: v.optional(v.boolean(), false),
      }),
      v.strictObject({ type: v.literal("full"), tensors: v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1)) }),
    ]),
  }),
  wordPerLabel(),
);
export type FedKSeedConfig = v.InferOutput<typeof FedKSeedConfig>;
/** What a FedKSeed client perturbs: LoRA pairs or whole tensors. */
export type ZoTrains = FedKSeedConfig["trains"];
