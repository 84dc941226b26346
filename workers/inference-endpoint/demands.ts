// Each route's request measured as a Demand (rows, positions, answer size, perturbation work) from its
// body alone, so limits.ts can refuse it before any of the work is done.
import { trainableTensors } from "../../src/engine/llama/graph.ts";
import type { LoadedModel } from "../../src/engine/model-files.ts";
import { zoSpec } from "../../src/fl/methods/fedkseed/zo-update.ts";
import type { Demand } from "./limits.ts";
import type { CompletionRequest, HiddenStatesRequest, PerturbedScoresRequest, PromptScoresRequest } from "./schemas.ts";

/** Characters a token may stand for at the most: a bound, so text too long for the context is refused before it is encoded. */
export const MAX_CHARS_PER_TOKEN = 64;

/**
 * A completion request as far as it can be measured without tokenizing: its prompts' count, and for text
 * the fewest tokens it can encode to (encoding 8 MB of text took 6 s of the event loop).
 */
export function promptTextDemand(req: CompletionRequest): Demand {
  const p = req.prompt;
  const rows =
    typeof p === "string"
      ? [Math.ceil(p.length / MAX_CHARS_PER_TOKEN)]
      : typeof p[0] === "number"
        ? [p.length]
        : (p as (string | number[])[]).map((x) => (typeof x === "string" ? Math.ceil(x.length / MAX_CHARS_PER_TOKEN) : x.length));
  return { rows, rowsField: "prompt" };
}

/** The completion's prompts as token ids (text encoded with the model's tokenizer), one per choice. */
export function promptIds(model: LoadedModel, p: CompletionRequest["prompt"]): number[][] {
  const encode = (text: string) => model.tokenizer.encode(text);
  if (typeof p === "string") return [encode(p)];
  if (typeof p[0] === "number") return [p as number[]];
  return (p as (string | number[])[]).map((x) => (typeof x === "string" ? encode(x) : x));
}

/** OpenAI's rule: a prompt and max_tokens must fit the context together. */
export function completionDemand(prompts: readonly (readonly number[])[], req: CompletionRequest): Demand {
  const maxTokens = req.max_tokens ?? 16;
  const rows = prompts.map((p) => p.length);
  const echoEntries = req.echo && req.logprobs != null ? rows.reduce((a, b) => a + b, 0) * (1 + req.logprobs) : 0;
  return {
    rows,
    rowsField: "prompt",
    maxTokens,
    echoEntries,
    ...(maxTokens > 0 ? { extraPositions: { count: maxTokens, what: "of max_tokens" } } : {}),
  };
}

export function hiddenStatesDemand(model: LoadedModel, req: HiddenStatesRequest): Demand {
  return { rows: req.input_ids.map((r) => r.length), rowsField: "input_ids", hiddenStates: { hidden: model.config.hiddenSize } };
}

/** The perturbation draws one direction per term over every trained value, and builds w0 over them too. */
export function perturbedScoresDemand(model: LoadedModel, req: PerturbedScoresRequest): Demand {
  const { config, weights } = model;
  let trained: number;
  if (req.trains.type === "full") {
    trained = 0;
    for (const n of req.trains.tensors) {
      const w = weights.get(n);
      if (!w) throw new RangeError(`trains.tensors: "${n}" is not a tensor of this model`);
      trained += w.length;
    }
  } else trained = trainableTensors(config, zoSpec(req.trains)).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  return {
    rows: req.input_ids.map((r) => r.length),
    rowsField: "input_ids",
    perturbation: { values: (req.terms.length + 1) * trained, what: `(${req.terms.length} terms + w0) x ${trained} trained values` },
  };
}

/** The projection draws one column of prompt tokens x hidden values per entry of z; a prefix prompt adds its positions to every row. */
export function promptScoresDemand(model: LoadedModel, req: PromptScoresRequest): Demand {
  const p = req.prompt;
  const H = model.config.hiddenSize;
  return {
    rows: req.input_ids.map((r) => r.length),
    rowsField: "input_ids",
    ...(p.placement === "prefix" ? { extraPositions: { count: p.tokens, what: "soft prompt tokens" } } : {}),
    perturbation: { values: p.z.length * p.tokens * H, what: `${p.z.length} z values x ${p.tokens} prompt tokens x ${H} hidden` },
  };
}
