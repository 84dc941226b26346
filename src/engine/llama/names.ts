// Hugging Face tensor names of a LlamaForCausalLM (or Qwen2ForCausalLM) checkpoint and the shapes the config implies.
import type { LlamaConfig } from "../config.ts";

export const ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;
export const MLP_MODULES = ["gate_proj", "up_proj", "down_proj"] as const;
export type LinearModule = (typeof ATTENTION_MODULES)[number] | (typeof MLP_MODULES)[number];
export const LINEAR_MODULES: readonly LinearModule[] = [...ATTENTION_MODULES, ...MLP_MODULES];

export function linearName(layer: number, module: LinearModule): string {
  const block = (ATTENTION_MODULES as readonly string[]).includes(module) ? "self_attn" : "mlp";
  return `model.layers.${layer}.${block}.${module}`;
}

/** [out, in] of a linear module. */
export function linearShape(c: LlamaConfig, module: LinearModule): [number, number] {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  switch (module) {
    case "q_proj":
      return [q, c.hiddenSize];
    case "k_proj":
    case "v_proj":
      return [kv, c.hiddenSize];
    case "o_proj":
      return [c.hiddenSize, q];
    case "gate_proj":
    case "up_proj":
      return [c.intermediateSize, c.hiddenSize];
    case "down_proj":
      return [c.hiddenSize, c.intermediateSize];
  }
}

/** Whether the linear adds a bias `<linear>.bias` [out] (config.linearBiases). */
export function hasBias(c: LlamaConfig, module: LinearModule): boolean {
  return c.linearBiases.includes(module);
}

export const EMBED = "model.embed_tokens.weight";
export const FINAL_NORM = "model.norm.weight";
export const LM_HEAD = "lm_head.weight";

/**
 * Every tensor the model needs, with its shape: of all its layers, or of the decoder layers `layers`
 * (original indices, as an offsite-tuning emulator keeps them). `lm_head.weight` only when untied.
 */
export function expectedTensors(c: LlamaConfig, layers: readonly number[] = allLayers(c)): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set(EMBED, [c.vocabSize, c.hiddenSize]);
  for (const l of layers) {
    m.set(`model.layers.${l}.input_layernorm.weight`, [c.hiddenSize]);
    m.set(`model.layers.${l}.post_attention_layernorm.weight`, [c.hiddenSize]);
    for (const mod of LINEAR_MODULES) {
      const shape = linearShape(c, mod);
      m.set(`${linearName(l, mod)}.weight`, shape);
      if (hasBias(c, mod)) m.set(`${linearName(l, mod)}.bias`, [shape[0]]);
    }
  }
  m.set(FINAL_NORM, [c.hiddenSize]);
  if (!c.tieWordEmbeddings) m.set(LM_HEAD, [c.vocabSize, c.hiddenSize]);
  return m;
}

export function allLayers(c: LlamaConfig): number[] {
  return Array.from({ length: c.numLayers }, (_, l) => l);
}
