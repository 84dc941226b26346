// Autoregressive generation with a KV cache: one prefill over the prompt, then one token a step.
import type { ForwardModel } from "./forward.ts";
import { logSoftmax, sampleToken, seededUniform, topK, type SamplingOptions } from "./sampling.ts";

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
  /** Generation ends after any of these ids. */
  stopIds: readonly number[];
  /** When set, each step also reports its token's log-prob and the top-k alternatives. */
  topLogprobs?: number;
}

export interface StepLogprobs {
  logprob: number;
  top: [token: number, logprob: number][];
}

export interface GenerateResult {
  tokens: number[];
  /** Per generated token, with topLogprobs. */
  logprobs?: StepLogprobs[];
  finishReason: "stop" | "length";
}

/** `model` must be a step graph (kind "step"). */
export async function generateTokens(model: ForwardModel, prompt: readonly number[], opts: GenerateOptions): Promise<GenerateResult> {
  const V = model.config.vocabSize;
  const uniform = seededUniform(opts.seed);
  const tokens: number[] = [];
  const logprobs: StepLogprobs[] = [];
  const done = (finishReason: GenerateResult["finishReason"]): GenerateResult => ({
    tokens,
    finishReason,
    ...(opts.topLogprobs === undefined ? {} : { logprobs }),
  });
  let step = await model.run({ ids: [prompt] });
  let rows = prompt.length;
  while (tokens.length < opts.maxTokens) {
    const row = step.logits.subarray((rows - 1) * V, rows * V);
    const next = sampleToken(row, opts, uniform);
    tokens.push(next);
    if (opts.topLogprobs !== undefined) {
      const lp = logSoftmax(row);
      logprobs.push({ logprob: lp[next]!, top: topK(lp, opts.topLogprobs) });
    }
    if (opts.stopIds.includes(next)) return done("stop");
    if (tokens.length === opts.maxTokens) break;
    step = await model.run({ ids: [[next]], past: step.cache! });
    rows = 1;
  }
  return done("length");
}
