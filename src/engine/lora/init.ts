// New LoRA pairs as PEFT initialises them (init_lora_weights=True): A with kaiming-uniform(a=sqrt(5)),
// i.e. U(-1/sqrt(in), 1/sqrt(in)), and B zero, so training starts from the base model exactly.
import type { LlamaConfig } from "../config.ts";
import { linearName, linearShape, type LinearModule } from "../llama/names.ts";
import { seededUniform } from "../sampling.ts";

/**
 * Trainable tensors by graph input name (`<linear>.lora_A.weight`, `<linear>.lora_B.weight`), on the layers from
 * `fromLayer` up, each module at `rankOf` its linear name (r unless a rank_pattern says otherwise).
 */
export function initLoraParams(
  c: LlamaConfig,
  r: number,
  modules: readonly LinearModule[],
  seed: number,
  fromLayer = 0,
  rankOf: (linear: string) => number = () => r,
): Map<string, Float32Array> {
  const u = seededUniform(seed);
  const out = new Map<string, Float32Array>();
  for (let l = fromLayer; l < c.numLayers; l++)
    for (const m of modules) {
      const [o, i] = linearShape(c, m);
      const bound = 1 / Math.sqrt(i);
      const rank = rankOf(linearName(l, m));
      out.set(
        `${linearName(l, m)}.lora_A.weight`,
        Float32Array.from({ length: rank * i }, () => (2 * u() - 1) * bound),
      );
      out.set(`${linearName(l, m)}.lora_B.weight`, new Float32Array(o * rank));
    }
  return out;
}
