// Held-out perplexity: mean next-token NLL over windows, exponentiated.
import type { ForwardModel } from "./forward.ts";
import { heldOutLoss } from "./train/evaluate.ts";

export interface PerplexityResult {
  tokens: number;
  meanNll: number;
  perplexity: number;
}

/** `model` must be built with nll; each window of n tokens contributes its n - 1 next-token predictions. */
export async function perplexity(
  model: ForwardModel,
  windows: readonly (readonly number[])[],
  batchSize = 8,
  onProgress?: (done: number) => void,
): Promise<PerplexityResult> {
  // A window is an example trained on every position after its first.
  const examples = windows.map((w) => ({ ids: [...w], trained: w.map((_, t) => (t > 0 ? 1 : 0)) }));
  const { loss, tokens } = await heldOutLoss(model, examples, batchSize, onProgress);
  return { tokens, meanNll: loss, perplexity: Math.exp(loss) };
}
