// POST /v1/prompt-scores (FedBPT's extension of the inference endpoint): the summed NLL of each row's
// masked tokens under the soft prompt p0 + A z, projected there from z and the federation's seed. A
// FedBPT client whose model lives only there sends token ids and d numbers per candidate; the n x hidden
// prompt never crosses (search.ts, endpointPromptScorer).
import * as v from "valibot";
import { SOFT_PROMPT } from "../../../engine/llama/graph.ts";
import { maskedRows, rowScores, scoredRowsFields } from "../../../engine/scored-rows.ts";
import type { EndpointExtension } from "../method.ts";
import { int, placement } from "../shared/config-fields.ts";
import { FedBptConfig } from "./config.ts";
import { softPromptLayout, softPromptOf } from "./search.ts";

/**
 * Rows scored under the soft prompt p0 + A z that the endpoint makes itself from z and the projection
 * seed (search.ts), so a client sends d numbers, not n x hidden embeddings. With placement "suffix" a
 * row's ids vocab_size + k stand for the prompt's token k; with "prefix" the prompt goes before every row.
 */
export const PromptScoresRequest = v.object({
  ...scoredRowsFields,
  prompt: v.object({
    tokens: FedBptConfig.entries.promptTokens.wrapped,
    dimension: FedBptConfig.entries.dimension.wrapped,
    seed: int(0, 0xffffffff),
    placement,
    z: v.array(v.pipe(v.number(), v.finite())),
  }),
});
export type PromptScoresRequest = v.InferOutput<typeof PromptScoresRequest>;

export const fedbptEndpoint: EndpointExtension<PromptScoresRequest> = {
  path: "/v1/prompt-scores",
  request: PromptScoresRequest,
  counter: "prompt_rows",
  // The projection draws one column of prompt tokens x hidden values per entry of z; a prefix prompt adds its positions to every row.
  measure({ config }, { input_ids, prompt: p }) {
    const H = config.hiddenSize;
    return {
      rows: input_ids.map((r) => r.length),
      rowsField: "input_ids",
      ...(p.placement === "prefix" ? { extraPositions: { count: p.tokens, what: "soft prompt tokens" } } : {}),
      perturbation: { values: p.z.length * p.tokens * H, what: `${p.z.length} z values x ${p.tokens} prompt tokens x ${H} hidden` },
    };
  },
  answer(engine, req) {
    const { config, weights } = engine.model;
    const p = req.prompt;
    if (p.z.length !== p.dimension) throw new RangeError(`prompt.z has ${p.z.length} numbers for dimension ${p.dimension}`);
    const inline = p.placement === "suffix" ? p.tokens : 0;
    const rows = maskedRows(
      req.input_ids,
      req.loss_mask,
      config.vocabSize + inline,
      inline ? "the vocabulary and the prompt's ids" : "the vocabulary",
    );
    const prompt = softPromptOf(config, weights, { promptTokens: p.tokens, dimension: p.dimension, seed: p.seed })(p.z);
    return rowScores(engine, "fedflare.prompt_scores", rows, {
      key: `prompt/${p.tokens}/${p.placement}`,
      inputs: softPromptLayout(config, p.tokens, p.placement).inputs,
      params: new Map([[SOFT_PROMPT, prompt]]),
    });
  },
  openapi: {
    schema: "PromptScoresRequest",
    summary:
      "fedflare extension for FedBPT: summed NLL per row under the soft prompt p0 + A z, projected by the endpoint from z and the seed",
    description:
      "p0 is the embeddings of prompt.tokens vocabulary tokens drawn from prompt.seed; " +
      "A's column i is fedflare's seeded Gaussian direction 'fedbpt/A/i' scaled by the embedding's standard deviation " +
      "over sqrt(dimension) (src/fl/methods/fedbpt/search.ts). placement prefix puts the prompt before every row; " +
      "suffix puts token k wherever a row holds the id vocab_size + k.",
    answer: "{object: fedflare.prompt_scores, model, nll: summed NLL of each row's masked tokens, tokens: their count}",
  },
};
