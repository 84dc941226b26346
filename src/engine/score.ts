// Scores a text: the log-probability of each token given the ones before it.
import { ModelError } from "./errors.ts";
import type { ForwardModel } from "./forward.ts";
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
  const { nll } = await model.run({ ids: [tokens], targets: [targets] });
  const logprobs = Array.from(nll!.subarray(0, tokens.length - 1), (x) => -x);
  return { tokens: [...tokens], logprobs, mean_nll: -logprobs.reduce((a, b) => a + b, 0) / logprobs.length };
}

export function scoreText(model: ForwardModel, tokenizer: TextTokenizer, text: string): Promise<ScoreResult> {
  return scoreTokens(model, tokenizer.encode(text));
}
