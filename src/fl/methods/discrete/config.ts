import * as v from "valibot";
import { int, labels, labelWords, placement, wordPerLabel } from "../shared/config-fields.ts";

/**
 * Discrete prompts through any OpenAI-compatible /v1/completions (BDPL, Diao et al. 2023; federated:
 * FedOne, Wang et al. 2025): `slots` prompt positions, each a categorical distribution over `phrases`,
 * learned by a policy gradient on the verbalizer cross-entropy of `labels`. A version is the
 * distributions [slots, phrases]; an upload is the client's change of them. `population` prompts are
 * sampled per step; `queryBudget` caps the rows (prompt + label sequences) a client scores per round.
 * A round is `local.steps` policy-gradient steps at `local.lr`, each on `local.batchSize` examples.
 * FedOne is `clientsPerRound: 1`.
 */
export const DiscreteConfig = v.pipe(
  v.strictObject({
    type: v.literal("discrete"),
    slots: v.optional(int(1, 64), 4),
    phrases: v.pipe(
      v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(64))),
      v.minLength(2),
      v.maxLength(4096),
      v.check((xs) => new Set(xs).size === xs.length, "phrases must be unique"),
    ),
    population: v.optional(int(2, 256), 4),
    queryBudget: v.optional(int(1, 1_000_000_000)),
    labels,
    labelWords,
    placement,
  }),
  wordPerLabel(),
);
export type DiscreteConfig = v.InferOutput<typeof DiscreteConfig>;
