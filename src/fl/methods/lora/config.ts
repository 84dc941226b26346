import * as v from "valibot";
import { LINEAR_MODULES } from "../../../engine/llama/names.ts";
import { PatternKey } from "../../../engine/lora/peft.ts";
import { CLIENT_ID_PATTERN } from "../../../protocol/signature.ts";
import { int, labels, labelWords, upTo, wordPerLabel } from "../shared/config-fields.ts";

/** LoRA (Hu et al. 2022) in PEFT's layout; federated as FedIT (Zhang et al. 2024): clients upload their change of A and B. */
export const LoraConfig = v.pipe(
  v.strictObject({
    type: v.literal("lora"),
    r: int(1, 256),
    alpha: upTo(1e4),
    targetModules: v.pipe(v.array(v.picklist(LINEAR_MODULES)), v.minLength(1)),
    dropout: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(0.9)), 0),
    rslora: v.optional(v.boolean(), false),
    /**
     * PEFT's rank_pattern and alpha_pattern: a rank and an alpha for the modules a key names (the module's name
     * or a suffix of it after a dot, as a regular expression: PEFT's get_pattern_key), r and alpha elsewhere.
     */
    rankPattern: v.optional(v.record(PatternKey, int(1, 256))),
    alphaPattern: v.optional(v.record(PatternKey, upTo(1e4))),
    /** LoRA only on the layers from this index up (PEFT's layers_to_transform); clients may offload the trunk below. */
    fromLayer: v.optional(int(0, 1000), 0),
    /**
     * FFA-LoRA (Sun et al. 2024): A stays at its shared initialisation and clients train and upload only B (half
     * the bytes up), so the mean of the clients' B is exactly the update of the product B·A.
     */
    freezeA: v.optional(v.boolean()),
    /**
     * Per-client ranks (issue 21): each listed client trains the first `ranks[client]` ranks of the version
     * (rank r, the largest) with the version's scaling, and uploads that; the rest train rank r. The rule
     * combines them: "zero-pad" (each upload padded to r, the example-weighted mean), "hetlora" (HetLoRA's
     * per-module sparsity weights, Cho et al. 2024), "flexlora" (the rank-r SVD of the mean product, Bai et al.
     * 2024) or "flora" (Wang et al. 2024: each client trains fresh factors of its rank on top of the version,
     * frozen, and the version's product plus the stack of theirs is cut back to rank r by its SVD).
     * src/fl/methods/lora/hetero.ts, flora.ts.
     */
    hetero: v.optional(
      v.strictObject({
        rule: v.picklist(["zero-pad", "hetlora", "flexlora", "flora"]),
        ranks: v.pipe(
          v.record(v.pipe(v.string(), v.regex(CLIENT_ID_PATTERN, "a client id")), int(1, 256)),
          v.check((x) => Object.keys(x).length <= 10_000, "method.hetero.ranks names at most 10,000 clients"),
        ),
        /**
         * HetLoRA's rank self-pruning (rule "hetlora" only): each client penalises, with weight `lambda`, the ranks
         * a prune would drop (from max(minRank, ⌊gamma r_k⌋) up), and drops them for good when their norm product
         * shrank over its local training (hetlora-prune.ts).
         */
        prune: v.optional(
          v.strictObject({
            gamma: v.pipe(v.number(), v.gtValue(0), v.ltValue(1)),
            lambda: v.pipe(v.number(), v.minValue(0), v.maxValue(100)),
            minRank: v.optional(int(1, 256), 1),
          }),
        ),
      }),
    ),
    /**
     * For a classification task whose completions are " " + label: clients train each example's gold label
     * word after its prompt, the softmax over the label words only (shared/label-word-training.ts), and versions are scored by
     * those words. One token a word.
     */
    labels: v.optional(labels),
    labelWords,
  }),
  wordPerLabel(),
);
export type LoraConfig = v.InferOutput<typeof LoraConfig>;
