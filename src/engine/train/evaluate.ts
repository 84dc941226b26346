// Mean NLL over the trained positions of held-out examples, with whatever adapter the model carries.
import type { TokenizedExample } from "../../data/examples.ts";
import { exampleBatch } from "../../data/examples.ts";
import type { ForwardModel } from "../forward.ts";

/** `model` must be built with nll. */
export async function heldOutLoss(model: ForwardModel, examples: readonly TokenizedExample[], batchSize = 8, onProgress?: (done: number) => void): Promise<{ loss: number; tokens: number }> {
  let sum = 0;
  let tokens = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const group = examples.slice(i, i + batchSize);
    const b = exampleBatch(group, 1);
    const { nll } = await model.run(b);
    b.lossWeights.flat().forEach((w, j) => {
      if (w) {
        sum += nll![j]!;
        tokens++;
      }
    });
    onProgress?.(Math.min(i + batchSize, examples.length));
  }
  return { loss: sum / tokens, tokens };
}
