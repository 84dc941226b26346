// POST /v1/prompt-scores (a fedflare extension for FedBPT): the summed NLL of each row's masked tokens
// under the soft prompt p0 + A z, projected here from z and the federation's seed. A FedBPT client whose
// model lives only here sends token ids and d numbers per candidate; the n x hidden prompt never crosses.
import { ForwardModel } from "../../src/engine/forward.ts";
import { SOFT_PROMPT } from "../../src/engine/llama/graph.ts";
import { exampleNlls } from "../../src/engine/train/evaluate.ts";
import { softPromptLayout, softPromptOf } from "../../src/fl/methods/fedbpt/search.ts";
import type { Engine } from "./completions.ts";
import { countedTokens, maskedRows } from "./masked-rows.ts";
import type { PromptScoresRequest } from "./schemas.ts";

export async function promptScores(
  engine: Engine,
  req: PromptScoresRequest,
): Promise<{ object: string; model: string; nll: number[]; tokens: number[] }> {
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
  const layout = softPromptLayout(config, p.tokens, p.placement);
  const prompt = softPromptOf(config, weights, { promptTokens: p.tokens, dimension: p.dimension, seed: p.seed })(p.z);
  const nll = await engine.sessions.use(
    `prompt/${p.tokens}/${p.placement}`,
    () => ForwardModel.create(engine.runtime, config, weights, { kind: "forward", nll: true, inputs: layout.inputs }),
    (model) => exampleNlls(model, rows, rows.length, undefined, new Map([[SOFT_PROMPT, prompt]])),
  );
  engine.served.promptRows += rows.length;
  return { object: "fedflare.prompt_scores", model: engine.name, nll, tokens: countedTokens(rows) };
}
