// A float64 Llama forward in plain TypeScript, written from transformers' modeling_llama.py (and
// modeling_qwen2.py's biases) and independent of the ONNX graph code: the graph must agree with it on tiny random models.
import type { LlamaConfig } from "../../src/engine/config.ts";
import type { LoraPair, Weights } from "../../src/engine/llama/graph.ts";
import { floatOf } from "../../src/engine/quantize.ts";

type Mat = Float64Array;

/** y[n, out] = x[n, in] W^T for W [out, in]. */
function linear(x: Mat, n: number, inp: number, w: ArrayLike<number>, out: number): Mat {
  const y = new Float64Array(n * out);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let k = 0; k < inp; k++) s += x[i * inp + k]! * w[o * inp + k]!;
      y[i * out + o] = s;
    }
  return y;
}

function rmsNorm(x: Mat, n: number, d: number, w: ArrayLike<number>, eps: number): Mat {
  const y = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let ms = 0;
    for (let k = 0; k < d; k++) ms += x[i * d + k]! ** 2;
    const inv = 1 / Math.sqrt(ms / d + eps);
    for (let k = 0; k < d; k++) y[i * d + k] = x[i * d + k]! * inv * w[k]!;
  }
  return y;
}

export interface ReferenceInput {
  ids: readonly (readonly number[])[];
  /** 1 for real tokens, 0 for padding; defaults to all ones. */
  mask?: readonly (readonly number[])[];
  /** Soft-prompt embeddings [n, hidden] placed before every row's tokens. */
  prefix?: ArrayLike<number>;
}

/** logits [B, n + T, V] in float64 (n: soft-prompt length). */
export function referenceLogits(
  c: LlamaConfig,
  weights: Weights,
  input: ReferenceInput,
  lora?: ReadonlyMap<string, LoraPair>,
): Float64Array {
  return referenceRun(c, weights, input, lora, c.numLayers).logits;
}

/** The hidden states after `layers` decoder layers, [B, T, hidden] (transformers' hidden_states[layers]). */
export function referenceHidden(c: LlamaConfig, weights: Weights, input: ReferenceInput, layers: number): Float64Array {
  return referenceRun(c, weights, input, undefined, layers).hidden;
}

function referenceRun(
  c: LlamaConfig,
  weights: Weights,
  input: ReferenceInput,
  lora: ReadonlyMap<string, LoraPair> | undefined,
  layers: number,
): { logits: Float64Array; hidden: Float64Array } {
  const B = input.ids.length;
  const H = c.hiddenSize;
  const n = (input.prefix?.length ?? 0) / H;
  const T = n + input.ids[0]!.length;
  const D = c.headDim;
  const w = (name: string) => floatOf(weights.get(name)!);
  const lin = (x: Mat, n: number, inp: number, name: string, out: number): Mat => {
    const y = linear(x, n, inp, w(`${name}.weight`), out);
    // nn.Linear's bias, where the checkpoint has one (Qwen2Attention's q/k/v_proj, Llama's attention_bias).
    const stored = weights.get(`${name}.bias`);
    const bias = stored && floatOf(stored);
    if (bias) for (let i = 0; i < y.length; i++) y[i]! += bias[i % out]!;
    const p = lora?.get(name);
    if (p) {
      const delta = linear(linear(x, n, inp, p.a, p.r), n, p.r, p.b, out);
      for (let i = 0; i < y.length; i++) y[i]! += p.scaling * delta[i]!;
    }
    return y;
  };
  const mask = (input.mask ?? input.ids.map((r) => r.map(() => 1))).map((r) => [...Array<number>(n).fill(1), ...r]);
  const invFreq = Array.from({ length: D / 2 }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / D));

  const logits = new Float64Array(B * T * c.vocabSize);
  const hidden = new Float64Array(B * T * H);
  for (let b = 0; b < B; b++) {
    // positions as transformers derives them from the mask: cumsum - 1, padding at 1.
    let seen = 0;
    const pos = mask[b]!.map((m) => (m ? seen++ : 1));
    let h = new Float64Array(T * H);
    for (let t = 0; t < T; t++)
      for (let k = 0; k < H; k++)
        h[t * H + k] = t < n ? input.prefix![t * H + k]! : w("model.embed_tokens.weight")[input.ids[b]![t - n]! * H + k]!;

    for (let l = 0; l < layers; l++) {
      const p = `model.layers.${l}`;
      const x = rmsNorm(h, T, H, w(`${p}.input_layernorm.weight`), c.rmsNormEps);
      const q = lin(x, T, H, `${p}.self_attn.q_proj`, c.numHeads * D);
      const k = lin(x, T, H, `${p}.self_attn.k_proj`, c.numKvHeads * D);
      const v = lin(x, T, H, `${p}.self_attn.v_proj`, c.numKvHeads * D);
      const rotate = (m: Mat, heads: number) => {
        for (let t = 0; t < T; t++)
          for (let hd = 0; hd < heads; hd++) {
            const o = (t * heads + hd) * D;
            const orig = m.slice(o, o + D);
            for (let i = 0; i < D; i++) {
              const angle = pos[t]! * invFreq[i % (D / 2)]!;
              const rot = i < D / 2 ? -orig[i + D / 2]! : orig[i - D / 2]!;
              m[o + i] = orig[i]! * Math.cos(angle) + rot * Math.sin(angle);
            }
          }
      };
      rotate(q, c.numHeads);
      rotate(k, c.numKvHeads);
      const attn = new Float64Array(T * c.numHeads * D);
      const group = c.numHeads / c.numKvHeads;
      for (let hd = 0; hd < c.numHeads; hd++) {
        const kvh = Math.floor(hd / group);
        for (let i = 0; i < T; i++) {
          const s = new Float64Array(T);
          for (let j = 0; j < T; j++) {
            if (j > i || !mask[b]![j]) {
              s[j] = -1e9;
              continue;
            }
            let dot = 0;
            for (let d = 0; d < D; d++) dot += q[(i * c.numHeads + hd) * D + d]! * k[(j * c.numKvHeads + kvh) * D + d]!;
            s[j] = dot / Math.sqrt(D);
          }
          const max = Math.max(...s);
          let z = 0;
          for (let j = 0; j < T; j++) z += s[j] = Math.exp(s[j]! - max);
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let j = 0; j < T; j++) acc += (s[j]! / z) * v[(j * c.numKvHeads + kvh) * D + d]!;
            attn[(i * c.numHeads + hd) * D + d] = acc;
          }
        }
      }
      const o = lin(attn, T, c.numHeads * D, `${p}.self_attn.o_proj`, H);
      h = h.map((val, i) => val + o[i]!);
      const y = rmsNorm(h, T, H, w(`${p}.post_attention_layernorm.weight`), c.rmsNormEps);
      const I = c.intermediateSize;
      const gate = lin(y, T, H, `${p}.mlp.gate_proj`, I);
      const up = lin(y, T, H, `${p}.mlp.up_proj`, I);
      const act = gate.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]!);
      const down = lin(act, T, I, `${p}.mlp.down_proj`, H);
      h = h.map((val, i) => val + down[i]!);
    }
    hidden.set(h, b * T * H);
    const final = rmsNorm(h, T, H, w("model.norm.weight"), c.rmsNormEps);
    const head = c.tieWordEmbeddings ? w("model.embed_tokens.weight") : w("lm_head.weight");
    logits.set(linear(final, T, H, head, c.vocabSize), b * T * c.vocabSize);
  }
  return { logits, hidden };
}

function logSoftmaxAt(row: Float64Array, target: number): number {
  const max = Math.max(...row);
  let z = 0;
  for (const x of row) z += Math.exp(x - max);
  return row[target]! - max - Math.log(z);
}

/** sum over positions of NLL(targets) * lossWeights, in float64; targets and weights are [B * (n + T)]. */
export function referenceLoss(
  c: LlamaConfig,
  weights: Weights,
  input: ReferenceInput,
  targets: readonly number[],
  lossWeights: readonly number[],
  lora?: ReadonlyMap<string, LoraPair>,
): number {
  const logits = referenceLogits(c, weights, input, lora);
  const V = c.vocabSize;
  let loss = 0;
  for (let i = 0; i < targets.length; i++)
    if (lossWeights[i]) loss -= lossWeights[i]! * logSoftmaxAt(logits.subarray(i * V, (i + 1) * V), targets[i]!);
  return loss;
}

/** log p(ids[t+1] | ids[..t]) for one unpadded sequence, after a soft-prompt `prefix` [n, hidden] where given. */
export function referenceLogprobs(
  c: LlamaConfig,
  weights: Weights,
  ids: number[],
  lora?: ReadonlyMap<string, LoraPair>,
  prefix?: ArrayLike<number>,
): number[] {
  const logits = referenceLogits(c, weights, { ids: [ids], ...(prefix ? { prefix } : {}) }, lora);
  const V = c.vocabSize;
  const n = (prefix?.length ?? 0) / c.hiddenSize;
  const out: number[] = [];
  for (let t = 0; t + 1 < ids.length; t++) out.push(logSoftmaxAt(logits.subarray((n + t) * V, (n + t + 1) * V), ids[t + 1]!));
  return out;
}
