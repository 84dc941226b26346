// The OpenAI completions request subset the endpoint implements, validated before use. Sizes (rows,
// max_tokens, terms) are the endpoint's configurable limits (limits.ts), not fixed here.
import * as v from "valibot";
import { FedKSeedConfig } from "../../src/fl/methods/fedkseed/config.ts";

const tokenIds = v.pipe(v.array(v.pipe(v.number(), v.integer(), v.minValue(0))), v.minLength(1));

export const CompletionRequest = v.object({
  model: v.string(),
  /** Text, token ids, or a list of either (one choice each). */
  prompt: v.union([v.string(), tokenIds, v.pipe(v.array(v.string()), v.minLength(1)), v.pipe(v.array(tokenIds), v.minLength(1))]),
  max_tokens: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0))), 16),
  echo: v.optional(v.boolean(), false),
  logprobs: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(20)))),
  temperature: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(2))), 1),
  top_p: v.optional(v.nullable(v.pipe(v.number(), v.gtValue(0), v.maxValue(1))), 1),
  stop: v.optional(v.nullable(v.union([v.string(), v.pipe(v.array(v.string()), v.maxLength(4))]))),
  seed: v.optional(v.nullable(v.pipe(v.number(), v.integer()))),
  n: v.optional(v.nullable(v.literal(1, "only n = 1 is supported"))),
  stream: v.optional(v.nullable(v.literal(false, "streaming is not supported"))),
  user: v.optional(v.string()),
});
export type CompletionRequest = v.InferOutput<typeof CompletionRequest>;

/** fedflare's extension: the trunk's hidden states after `layer` decoder layers, for split training. */
export const HiddenStatesRequest = v.object({
  model: v.string(),
  /** Rows of token ids (right-padded in the answer; `lengths` says where each ends). */
  input_ids: v.pipe(v.array(tokenIds), v.minLength(1)),
  layer: v.pipe(v.number(), v.integer(), v.minValue(0)),
  dtype: v.optional(v.picklist(["f32", "f16", "bf16"]), "f32"),
});
export type HiddenStatesRequest = v.InferOutput<typeof HiddenStatesRequest>;

const u32 = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff));

/**
 * fedflare's extension for zeroth-order methods: score rows under the model whose trained tensors are
 * w0 + sum of scale * z(seed) over `terms` (w0: PEFT's initialisation from `federation_seed` for LoRA, the
 * model's own tensors for full), z from fedflare's seeded generator (src/fl/zo/directions.ts).
 */
export const PerturbedScoresRequest = v.object({
  model: v.string(),
  input_ids: v.pipe(v.array(tokenIds), v.minLength(1)),
  /** Per row and token: 1 when the token counts in the loss (it is predicted from those before it). */
  loss_mask: v.array(v.array(v.picklist([0, 1]))),
  trains: FedKSeedConfig.entries.trains,
  direction: v.optional(v.picklist(["gaussian", "rademacher"]), "gaussian"),
  federation_seed: v.optional(u32, 0),
  terms: v.array(v.tuple([u32, v.pipe(v.number(), v.finite())])),
});
export type PerturbedScoresRequest = v.InferOutput<typeof PerturbedScoresRequest>;

/**
 * fedflare's extension for FedBPT (black-box prompt tuning): score rows under the soft prompt p0 + A z
 * that the endpoint makes itself from z and the projection seed (src/fl/bbt/fedbpt.ts), so a client
 * sends d numbers, not n x hidden embeddings. With placement "suffix" a row's ids vocab_size + k stand
 * for the prompt's token k; with "prefix" the prompt goes before every row.
 */
export const PromptScoresRequest = v.object({
  model: v.string(),
  input_ids: v.pipe(v.array(tokenIds), v.minLength(1)),
  loss_mask: v.array(v.array(v.picklist([0, 1]))),
  prompt: v.object({
    tokens: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(256)),
    dimension: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)),
    seed: u32,
    placement: v.optional(v.picklist(["prefix", "suffix"]), "prefix"),
    z: v.array(v.pipe(v.number(), v.finite())),
  }),
});
export type PromptScoresRequest = v.InferOutput<typeof PromptScoresRequest>;
