// Initial weights for a Llama model, as transformers' LlamaPreTrainedModel._init_weights: linears and
// embeddings ~ N(0, initializer_range), biases 0, RMSNorm weights 1. Seeded, so a model is reproducible.
import type { LlamaConfig } from "../config.ts";
import { seededUniform } from "../sampling.ts";
import { expectedTensors } from "./names.ts";

export interface InitOptions {
  seed: number;
  /** transformers' initializer_range. */
  std?: number;
  /** Standard deviation of noise added to the norm weights (0: exactly 1, as transformers). */
  normStd?: number;
  /** Standard deviation of the linears' biases (0: exactly 0, as transformers). */
  biasStd?: number;
}

/** Normal(0, std) samples by Box-Muller. */
export function normalSamples(uniform: () => number, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/** The initial tensors one at a time, in expectedTensors' order (a model too large to hold in float32 is written as they come). */
export function* initLlamaTensors(config: LlamaConfig, opts: InitOptions): Generator<[string, Float32Array]> {
  const uniform = seededUniform(opts.seed);
  const std = opts.std ?? 0.02;
  for (const [name, shape] of expectedTensors(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.endsWith(".bias")) yield [name, normalSamples(uniform, n, opts.biasStd ?? 0)];
    else yield [name, shape.length === 1 ? normalSamples(uniform, n, opts.normStd ?? 0).map((x) => 1 + x) : normalSamples(uniform, n, std)];
  }
}

export function initLlamaWeights(config: LlamaConfig, opts: InitOptions): Map<string, Float32Array> {
  return new Map(initLlamaTensors(config, opts));
}
