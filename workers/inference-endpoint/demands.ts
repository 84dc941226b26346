// The endpoint's own routes' requests measured as a Demand (rows, positions, answer size) from their
// body alone, so limits.ts can refuse them before any of the work is done (a method's extension
// measures its own: EndpointExtension.measure).
import type { LoadedModel } from "../../src/engine/model-files.ts";
import type { Demand } from "../../src/engine/endpoint.ts";
import type { CompletionRequest, HiddenStatesRequest } from "./schemas.ts";

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
