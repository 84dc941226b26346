// Rotary embedding frequencies as transformers computes them (modeling_rope_utils.py), including the
// "linear" and "llama3" scalings.
import type { LlamaConfig } from "../config.ts";

export function ropeInvFreq(config: Pick<LlamaConfig, "headDim" | "ropeTheta" | "ropeScaling">): Float64Array {
  const { headDim: d, ropeTheta: base, ropeScaling: scaling } = config;
  const inv = new Float64Array(d / 2);
  for (let i = 0; i < d / 2; i++) inv[i] = 1 / base ** ((2 * i) / d);
  if (!scaling) return inv;
  if (scaling.rope_type === "linear") return inv.map((f) => f / scaling.factor);
  const { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: oldLen } = scaling;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < oldLen / high) return f;
    if (wavelen > oldLen / low) return f / factor;
    const smooth = (oldLen / wavelen - low) / (high - low);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}
