// Scores a text: the log-probability of each token given the ones before it; and prompts of any lengths
// in one batch, with their top alternatives, as the inference endpoint's completions answer them.
import { ModelError } from "./errors.ts";
import type { ForwardModel, ScoredPositions } from "./forward.ts";
import type { TextTokenizer } from "./tokenizer/load.ts";

export interface ScoreResult {
  tokens: number[];
  /** logprobs[i] = log p(tokens[i + 1] | tokens[0..i]). */
  logprobs: number[];
  mean_nll: number;
}

/** `model` must be built with nll. */
export async function scoreTokens(model: ForwardModel, tokens: readonly number[]): Promise<ScoreResult> {
  if (tokens.length < 2) throw new ModelError("input_invalid", `scoring needs at least 2 tokens, got ${tokens.length}: give a longer text`);
  // The last position has no next token: its target is a placeholder and its nll is dropped.
  const targets = [...tokens.slice(1), 0];
  const { nll } = await model.run({ ids: [tokens], targets: [targets], skipLogits: true });
  const logprobs = Array.from(nll!.subarray(0, tokens.length - 1), (x) => -x);
  return { tokens: [...tokens], logprobs, mean_nll: -logprobs.reduce((a, b) => a + b, 0) / logprobs.length };
}

export function scoreText(model: ForwardModel, tokenizer: TextTokenizer, text: string): Promise<ScoreResult> {
  return scoreTokens(model, tokenizer.encode(text));
}

/** A prompt for scorePrompts: its token ids, and how many alternatives each position ranks (0: none). */
export interface PromptToScore {
  ids: readonly number[];
  topK: number;
}

/**
 * Scores prompts of any lengths in one run of `model` (built with logprobs), right-padded to the longest:
 * each prompt's ScoredPositions over its own positions (S = its length, position t scoring ids[t + 1]; the
 * last scores nothing), ranking the batch's largest topK. The logits stay in the session.
 */
export async function scorePrompts(model: ForwardModel, prompts: readonly PromptToScore[]): Promise<ScoredPositions[]> {
  const V = model.config.vocabSize;
  const len = Math.max(...prompts.map((p) => p.ids.length));
  const pad = (row: readonly number[]) => [...row, ...Array<number>(len - row.length).fill(0)];
  const k = Math.max(1, ...prompts.map((p) => p.topK));
  const { logprobs } = await model.run({
    ids: prompts.map((p) => pad(p.ids)),
    mask: prompts.map((p) => pad(p.ids.map(() => 1))),
    targets: prompts.map((p) => pad(p.ids.slice(1))),
    topK: k,
    skipLogits: true,
  });
  const s = logprobs!;
  return prompts.map(({ ids }, b) => ({
    target: s.target.slice(b * len, b * len + ids.length),
    k,
    top: s.top.slice(b * len * k, (b * len + ids.length) * k),
    topIds: s.topIds.slice(b * len * k, (b * len + ids.length) * k),
    last: s.last.slice(b * V, (b + 1) * V),
  }));
}
