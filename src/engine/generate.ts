// Autoregressive generation with a KV cache: one prefill over the prompt, then one token a step.
import type { ForwardModel } from "./forward.ts";
import { sampleToken, seededUniform, type SamplingOptions } from "./sampling.ts";

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
  /** Generation ends after any of these ids. */
  stopIds: readonly number[];
}

export interface GenerateResult {
  tokens: number[];
  finishReason: "stop" | "length";
}

/** `model` must be built with kvCache. */
export async function generateTokens(model: ForwardModel, prompt: readonly number[], opts: GenerateOptions): Promise<GenerateResult> {
  const V = model.config.vocabSize;
  const uniform = seededUniform(opts.seed);
  const tokens: number[] = [];
  let step = await model.run({ ids: [prompt] });
  let rows = prompt.length;
  while (tokens.length < opts.maxTokens) {
    const next = sampleToken(step.logits.subarray((rows - 1) * V, rows * V), opts, uniform);
    tokens.push(next);
    if (opts.stopIds.includes(next)) return { tokens, finishReason: "stop" };
    if (tokens.length === opts.maxTokens) break;
    step = await model.run({ ids: [[next]], past: step.cache! });
    rows = 1;
  }
  return { tokens, finishReason: "length" };
}
