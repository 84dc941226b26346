// Model FLOPs per token of a Llama forward pass, for utilisation figures.
import type { LlamaConfig } from "../../src/engine/config.ts";
import { EMBED, expectedTensors } from "../../src/engine/llama/names.ts";

/**
 * 2 x the weights of every linear and of the head (a tied head is the embedding table, counted once
 * as the head), plus the attention products QK^T and PV over the T positions of the sequence:
 * 2 x 2 x T x heads x head_dim per layer. The embedding lookup does no multiply-adds.
 */
export function forwardFlopsPerToken(c: LlamaConfig, T: number): number {
  let weights = c.tieWordEmbeddings ? c.vocabSize * c.hiddenSize : 0;
  for (const [name, shape] of expectedTensors(c)) if (shape.length === 2 && name !== EMBED) weights += shape[0]! * shape[1]!;
  return 2 * weights + c.numLayers * 4 * T * c.numHeads * c.headDim;
}
