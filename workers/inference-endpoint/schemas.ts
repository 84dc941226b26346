// The requests of the endpoint's own routes (the OpenAI completions subset it implements, hidden states),
// validated before use; a method's extension brings its own (EndpointExtension.request). Sizes (rows,
// max_tokens) are the endpoint's configurable limits (limits.ts), not fixed here.
import * as v from "valibot";
import { tokenIds } from "../../src/engine/scored-rows.ts";

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
