import * as v from "valibot";
import { int, labels, labelWords, placement, upTo, wordPerLabel } from "../shared/config-fields.ts";

/**
 * FedBPT (Sun et al., ICML 2024) over BBT's subspace: clients search z in R^`dimension` with CMA-ES for a
 * soft prompt of `promptTokens` tokens, p0 + A z, by the verbalizer cross-entropy of `labels`. A version
 * is the global mean z and step size (as `sigma2`, so averaging pools the clients' step sizes); an
 * upload is the client's mean and squared step size after its generations. A client's round is
 * `generations`, each scored on `local.batchSize` examples; `local.steps` and `local.lr` are not used.
 */
export const FedBptConfig = v.pipe(
  v.strictObject({
    type: v.literal("fedbpt"),
    promptTokens: v.optional(int(1, 256), 10),
    dimension: v.optional(int(1, 10_000), 100),
    sigma: v.optional(upTo(1e3), 1),
    generations: v.optional(int(1, 10_000), 8),
    population: v.optional(int(2, 1000)),
    /** FedBPT's perturbation rate: with it above 0, fitness is the cross-entropy over that on a copy with this share of tokens random. */
    perturb: v.optional(v.pipe(v.number(), v.minValue(0), v.ltValue(1)), 0),
    labels,
    labelWords,
    placement,
  }),
  wordPerLabel(),
);
export type FedBptConfig = v.InferOutput<typeof FedBptConfig>;
