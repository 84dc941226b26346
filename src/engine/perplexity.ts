// Held-out perplexity: mean next-token NLL over windows, exponentiated.
import type { ForwardModel } from "./forward.ts";

export interface PerplexityResult {
  tokens: number;
  meanNll: number;
  perplexity: number;
}

/** `model` must be built with nll; each window of n tokens contributes its n - 1 next-token predictions. */
export async function perplexity(model: ForwardModel, windows: readonly (readonly number[])[], batchSize = 8, onProgress?: (done: number) => void): Promise<PerplexityResult> {
  let sum = 0;
  let tokens = 0;
  for (let i = 0; i < windows.length; i += batchSize) {
    const group = windows.slice(i, i + batchSize);
    const len = Math.max(...group.map((w) => w.length)) - 1;
    const pad = (w: readonly number[], from: number) => [...w.slice(from, from + len), ...Array<number>(len - (w.length - 1)).fill(0)];
    const { nll } = await model.run({ ids: group.map((w) => pad(w, 0)), mask: group.map((w) => Array.from({ length: len }, (_, t) => (t < w.length - 1 ? 1 : 0))), targets: group.map((w) => pad(w, 1)) });
    group.forEach((w, b) => {
      for (let t = 0; t < w.length - 1; t++) sum += nll![b * len + t]!;
      tokens += w.length - 1;
    });
    onProgress?.(Math.min(i + batchSize, windows.length));
  }
  const meanNll = sum / tokens;
  return { tokens, meanNll, perplexity: Math.exp(meanNll) };
}
