// The LoRA training step of bench/train written with @tensorflow/tfjs on its wasm backend (the engine
// a JavaScript user would pick instead of ours, and the one epfml/disco trains with): the same Llama
// forward as src/engine/llama/graph.ts, LoRA on chosen linears, loss = sum(nll * lossWeights), and the
// gradients of the LoRA tensors two ways: tf.variableGrads (the idiomatic way) and a backward written
// by hand.
//
// tfjs-wasm runs a MatMul on XNNPACK only when both operands are 2-D and neither is transposed; every
// other MatMul (a transposed operand, or rank 3+) takes a naive loop at ~2 GFLOP/s, against ~20-40 on
// the fast path. So the forward keeps frozen weights pre-transposed to [in, out] and the hand-written
// backward keeps them as [out, in] too, transposes activations explicitly before a weight-gradient
// MatMul, and only the attention products (rank 3, no fast path at all) stay slow. RoPE's rotate_half
// is a product with a fixed [headDim, headDim] signed permutation: one fast 2-D MatMul, where tfjs-wasm's
// Slice/Split copy the whole input for every slice.
import { dirname } from "node:path";
import { createRequire } from "node:module";
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import type { LlamaConfig } from "../../src/engine/config.ts";
import { MASKED } from "../../src/engine/llama/masks.ts";
import { EMBED, FINAL_NORM, LM_HEAD, linearName, linearShape, type LinearModule } from "../../src/engine/llama/names.ts";
import { ropeInvFreq } from "../../src/engine/llama/rope.ts";
import type { TrainBatch } from "../../src/engine/train/step.ts";

export { tf };

/** Selects the wasm backend, loading its .wasm files from the package (no threads in Node: one core). */
export async function useTfjsWasm(): Promise<void> {
  const wasmFile = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm");
  setWasmPaths(`${dirname(wasmFile)}/`);
  if (!(await tf.setBackend("wasm"))) throw new Error("tfjs: the wasm backend did not initialise");
}

export interface LoraSpec {
  r: number;
  scaling: number;
  modules: readonly LinearModule[];
}

export interface StepOutput {
  loss: number;
  grads: Map<string, Float32Array>;
}

/** A frozen [out, in] weight in both layouts: [in, out] for x W^T, [out, in] for dy W. */
interface Frozen {
  w: tf.Tensor;
  wt: tf.Tensor;
}

/** What the hand-written backward reads back from the forward, per layer. */
interface LayerCache {
  hIn: tf.Tensor;
  inv1: tf.Tensor;
  x: tf.Tensor;
  /** x A^T [N, r] per LoRA module. */
  u: Map<LinearModule, tf.Tensor>;
  /** Roped q grouped by kv head [B*kv, nRep*T, hd]; roped k and v [B*kv, T, hd]; probabilities [B*kv, nRep*T, T]. */
  q: tf.Tensor;
  k: tf.Tensor;
  v: tf.Tensor;
  p: tf.Tensor;
  hMid: tf.Tensor;
  inv2: tf.Tensor;
  y: tf.Tensor;
  gate: tf.Tensor;
  sig: tf.Tensor;
  up: tf.Tensor;
}

/** The head's side of the forward: final norm input and inverse root, log-probabilities, targets, weights. */
interface Tail {
  h: tf.Tensor;
  inv: tf.Tensor;
  logp: tf.Tensor;
  onehot: tf.Tensor;
  w: tf.Tensor;
}

export class TfjsLlamaLora {
  private readonly c: LlamaConfig;
  private readonly spec: LoraSpec;
  private readonly embed: tf.Tensor;
  private readonly head: Frozen;
  private readonly linears = new Map<string, Frozen>();
  private readonly norms = new Map<string, tf.Tensor>();
  /** LoRA tensors by the same names as the ORT training graph's inputs. */
  private readonly lora = new Map<string, tf.Variable>();
  private readonly cos: tf.Tensor;
  private readonly sin: tf.Tensor;
  private readonly rot: Frozen;
  private readonly bias: tf.Tensor;

  /** Weights by Hugging Face name, LoRA tensors by `<linear>.lora_A.weight` / `.lora_B.weight`; T = sequence length. */
  constructor(
    c: LlamaConfig,
    weights: ReadonlyMap<string, Float32Array>,
    spec: LoraSpec,
    lora: ReadonlyMap<string, Float32Array>,
    T: number,
  ) {
    this.c = c;
    this.spec = spec;
    const get = (name: string) => weights.get(name) ?? missing(name);
    const frozen = (name: string, rows: number, cols: number): Frozen => {
      const w = tf.tensor2d(get(name), [rows, cols]);
      return { w, wt: tf.transpose(w) };
    };
    this.embed = tf.tensor2d(get(EMBED), [c.vocabSize, c.hiddenSize]);
    this.head = c.tieWordEmbeddings ? { w: this.embed, wt: tf.transpose(this.embed) } : frozen(LM_HEAD, c.vocabSize, c.hiddenSize);
    for (const [name, data] of weights) {
      if (name.endsWith("norm.weight")) this.norms.set(name, tf.tensor1d(data));
      else if (name !== EMBED && name !== LM_HEAD) {
        const [out, inp] = shapeOf(c, name);
        this.linears.set(name.slice(0, -".weight".length), frozen(name, out, inp));
      }
    }
    for (const [name, data] of lora) {
      const isA = name.endsWith(".lora_A.weight");
      const [out, inp] = shapeOf(c, name.replace(/\.lora_[AB]\.weight$/, ".weight"));
      this.lora.set(
        name,
        tf.tidy(() => tf.variable(tf.tensor2d(data, isA ? [spec.r, inp] : [out, spec.r]), true, name)),
      );
    }
    // RoPE as graph.ts: positions 0..T-1 (no padding), cos/sin [T, hd] with the frequencies repeated.
    const inv = ropeInvFreq(c);
    const half = c.headDim / 2;
    const angle = (t: number, i: number) => t * inv[i % half]!;
    this.cos = tf.tensor2d(
      Float32Array.from({ length: T * c.headDim }, (_, j) => Math.cos(angle(Math.floor(j / c.headDim), j % c.headDim))),
      [T, c.headDim],
    );
    this.sin = tf.tensor2d(
      Float32Array.from({ length: T * c.headDim }, (_, j) => Math.sin(angle(Math.floor(j / c.headDim), j % c.headDim))),
      [T, c.headDim],
    );
    // rotate_half(x) = x R with R[i + half, i] = -1, R[i, i + half] = 1.
    const r = new Float32Array(c.headDim * c.headDim);
    for (let i = 0; i < half; i++) {
      r[(i + half) * c.headDim + i] = -1;
      r[i * c.headDim + i + half] = 1;
    }
    const rot = tf.tensor2d(r, [c.headDim, c.headDim]);
    // Held like a weight: x R going forward, d R^T going back.
    this.rot = { w: tf.transpose(rot), wt: rot };
    this.bias = tf.tensor2d(
      Float32Array.from({ length: T * T }, (_, j) => (j % T <= Math.floor(j / T) ? 0 : MASKED)),
      [T, T],
    );
  }

  /** The step with tf.variableGrads over the forward: what the tfjs documentation teaches. */
  stepAutodiff(batch: TrainBatch): StepOutput {
    const vars = [...this.lora.values()];
    const { value, grads } = tf.tidy(() => tf.variableGrads(() => this.forward(batch, null).loss, vars));
    return this.download(value, grads);
  }

  /** The step with the backward written out: every 2-D MatMul on tfjs-wasm's fast path. */
  stepManual(batch: TrainBatch): StepOutput {
    const { loss, grads } = tf.tidy(() => {
      const caches: LayerCache[] = [];
      const { loss, tail } = this.forward(batch, caches);
      return { loss, grads: this.backward(batch, caches, tail) };
    });
    return this.download(loss, grads);
  }

  dispose(): void {
    tf.dispose([
      ...this.lora.values(),
      this.embed,
      this.head.wt,
      this.cos,
      this.sin,
      this.rot.w,
      this.rot.wt,
      this.bias,
      ...this.norms.values(),
      ...[...this.linears.values()].flatMap((f) => [f.w, f.wt]),
    ]);
    if (!this.c.tieWordEmbeddings) this.head.w.dispose();
  }

  private download(loss: tf.Scalar, grads: tf.NamedTensorMap): StepOutput {
    const out = { loss: loss.dataSync()[0]!, grads: new Map(Object.entries(grads).map(([k, g]) => [k, g.dataSync() as Float32Array])) };
    tf.dispose([loss, ...Object.values(grads)]);
    return out;
  }

  /** The scalar loss and what the head's backward needs; with `caches`, fills them (one per layer). */
  private forward(batch: TrainBatch, caches: LayerCache[] | null): { loss: tf.Scalar; tail: Tail } {
    const c = this.c;
    const [B, T] = [batch.ids.length, batch.ids[0]!.length];
    const N = B * T;
    const nRep = c.numHeads / c.numKvHeads;
    const ids = tf.tensor1d(batch.ids.flat(), "int32");
    let h = tf.gather(this.embed, ids);
    for (let l = 0; l < c.numLayers; l++) {
      const hIn = h;
      const { y: x, inv: inv1 } = this.rmsNorm(h, `model.layers.${l}.input_layernorm.weight`);
      const u = new Map<LinearModule, tf.Tensor>();
      const q = this.rope(this.heads(this.linear(x, l, "q_proj", u), c.numHeads), B * c.numKvHeads, nRep * T);
      const k = this.rope(this.heads(this.linear(x, l, "k_proj", u), c.numKvHeads), B * c.numKvHeads, T);
      const v = tf.reshape(this.heads(this.linear(x, l, "v_proj", u), c.numKvHeads), [B * c.numKvHeads, T, c.headDim]);
      // GQA without repeating k/v: the nRep query heads of a kv head are consecutive, so q grouped as
      // [B*kv, nRep*T, hd] meets its own k and v, and the scores regroup to [B, heads, T, T] for free.
      const scores = tf.reshape(tf.mul(tf.matMul(q, tf.transpose(k, [0, 2, 1])), 1 / Math.sqrt(c.headDim)), [B, c.numHeads, T, T]);
      const p = tf.reshape(tf.softmax(tf.add(scores, this.bias)), [B * c.numKvHeads, nRep * T, T]);
      const merged = tf.reshape(tf.transpose(tf.reshape(tf.matMul(p, v), [B, c.numHeads, T, c.headDim]), [0, 2, 1, 3]), [
        N,
        c.numHeads * c.headDim,
      ]);
      const hMid = tf.add(h, this.linear(merged, l, "o_proj", u));
      const { y, inv: inv2 } = this.rmsNorm(hMid, `model.layers.${l}.post_attention_layernorm.weight`);
      const gate = this.linear(y, l, "gate_proj", u);
      const sig = tf.sigmoid(gate);
      const up = this.linear(y, l, "up_proj", u);
      h = tf.add(hMid, this.linear(tf.mul(tf.mul(gate, sig), up), l, "down_proj", u));
      caches?.push({ hIn, inv1, x, u, q, k, v, p, hMid, inv2, y, gate, sig, up });
    }
    const { y: f, inv } = this.rmsNorm(h, FINAL_NORM);
    const logp = tf.logSoftmax(tf.matMul(f, this.head.wt));
    const onehot = tf.cast(tf.oneHot(tf.tensor1d(batch.targets.flat(), "int32"), c.vocabSize), "float32");
    const w = tf.tensor2d(batch.lossWeights.flat(), [N, 1]);
    return { loss: tf.neg(tf.sum<tf.Scalar>(tf.mul(tf.mul(logp, onehot), w))), tail: { h, inv, logp, onehot, w } };
  }

  private backward(batch: TrainBatch, caches: LayerCache[], tail: Tail): tf.NamedTensorMap {
    const c = this.c;
    const [B, T] = [batch.ids.length, batch.ids[0]!.length];
    const nRep = c.numHeads / c.numKvHeads;
    const { h, inv, logp, onehot, w } = tail;
    const grads: tf.NamedTensorMap = {};
    // d loss / d logits = w (softmax - onehot).
    const dLogits = tf.mul(tf.sub(tf.exp(logp), onehot), w);
    let dh = this.rmsNormBack(tf.matMul(dLogits, this.head.w), h, inv, FINAL_NORM);
    for (let l = c.numLayers - 1; l >= 0; l--) {
      const k = caches[l]!;
      const wOf = (m: LinearModule) => this.linears.get(linearName(l, m))!.w;
      // MLP: h = hMid + (silu(gate) * up) Wd^T.
      const dAct = tf.matMul(dh, wOf("down_proj"));
      const silu = tf.mul(k.gate, k.sig);
      const dGate = tf.mul(tf.mul(dAct, k.up), tf.mul(k.sig, tf.add(1, tf.mul(k.gate, tf.sub(1, k.sig)))));
      const dY = tf.add(this.linearBack(dGate, k, l, "gate_proj", grads), this.linearBack(tf.mul(dAct, silu), k, l, "up_proj", grads));
      const dhMid = tf.add(dh, this.rmsNormBack(dY, k.hMid, k.inv2, `model.layers.${l}.post_attention_layernorm.weight`));
      // Attention: hMid = hIn + merge(P V) Wo^T, P = softmax(q k^T / sqrt(hd) + bias).
      const dMerged = tf.matMul(dhMid, wOf("o_proj"));
      const dO = tf.reshape(tf.transpose(tf.reshape(dMerged, [B, T, c.numHeads, c.headDim]), [0, 2, 1, 3]), [
        B * c.numKvHeads,
        nRep * T,
        c.headDim,
      ]);
      const dP = tf.matMul(dO, tf.transpose(k.v, [0, 2, 1]));
      const dV = tf.matMul(tf.transpose(k.p, [0, 2, 1]), dO);
      const dS = tf.mul(tf.mul(k.p, tf.sub(dP, tf.sum(tf.mul(dP, k.p), -1, true))), 1 / Math.sqrt(c.headDim));
      const dQ = this.unheads(this.ropeBack(tf.matMul(dS, k.k), B, c.numHeads, T), B, T, c.numHeads);
      const dVf = this.unheads(tf.reshape(dV, [B, c.numKvHeads, T, c.headDim]), B, T, c.numKvHeads);
      // Layer 0's x comes from the frozen embedding: k and x need no gradient there.
      if (l === 0) {
        this.linearBack(dQ, k, l, "q_proj", grads);
        this.linearBack(dVf, k, l, "v_proj", grads);
        break;
      }
      const dK = this.unheads(this.ropeBack(tf.matMul(tf.transpose(dS, [0, 2, 1]), k.q), B, c.numKvHeads, T), B, T, c.numKvHeads);
      const dX = tf.addN([
        this.linearBack(dQ, k, l, "q_proj", grads),
        this.linearBack(dK, k, l, "k_proj", grads),
        this.linearBack(dVf, k, l, "v_proj", grads),
      ]);
      dh = tf.add(dhMid, this.rmsNormBack(dX, k.hIn, k.inv1, `model.layers.${l}.input_layernorm.weight`));
    }
    return grads;
  }

  /** y = x W^T (+ scaling (x A^T) B^T with LoRA); keeps x A^T in `u` for the backward. */
  private linear(x: tf.Tensor, layer: number, m: LinearModule, u: Map<LinearModule, tf.Tensor>): tf.Tensor {
    const name = linearName(layer, m);
    const y = tf.matMul(x, this.linears.get(name)!.wt);
    if (!this.spec.modules.includes(m)) return y;
    const xa = tf.matMul(x, tf.transpose(this.lora.get(`${name}.lora_A.weight`)!));
    u.set(m, xa);
    return tf.add(y, tf.mul(tf.matMul(xa, tf.transpose(this.lora.get(`${name}.lora_B.weight`)!)), this.spec.scaling));
  }

  /** d loss / d x of a linear; with LoRA also records dA = s (dy B)^T x and dB = s dy^T (x A^T). */
  private linearBack(dy: tf.Tensor, k: LayerCache, layer: number, m: LinearModule, grads: tf.NamedTensorMap): tf.Tensor {
    const name = linearName(layer, m);
    const dx = tf.matMul(dy, this.linears.get(name)!.w);
    if (!this.spec.modules.includes(m)) return dx;
    const a = this.lora.get(`${name}.lora_A.weight`)!;
    const b = this.lora.get(`${name}.lora_B.weight`)!;
    const dyS = tf.mul(dy, this.spec.scaling);
    const dxa = tf.matMul(dyS, b);
    grads[`${name}.lora_B.weight`] = tf.matMul(tf.transpose(dyS), k.u.get(m)!);
    grads[`${name}.lora_A.weight`] = tf.matMul(tf.transpose(dxa), k.x);
    return tf.add(dx, tf.matMul(dxa, a));
  }

  /** LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w; also returns the inverse root [N, 1]. */
  private rmsNorm(x: tf.Tensor, name: string): { y: tf.Tensor; inv: tf.Tensor } {
    const inv = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), this.c.rmsNormEps));
    return { y: tf.mul(tf.mul(x, inv), this.norms.get(name)!), inv };
  }

  /** dx = inv (dy w) - x inv^3 mean(dy w x). */
  private rmsNormBack(dy: tf.Tensor, x: tf.Tensor, inv: tf.Tensor, name: string): tf.Tensor {
    const dn = tf.mul(dy, this.norms.get(name)!);
    return tf.sub(tf.mul(dn, inv), tf.mul(x, tf.mul(tf.pow(inv, 3), tf.mean(tf.mul(dn, x), -1, true))));
  }

  /** [N, n*hd] -> [B, n, T, hd]. */
  private heads(x: tf.Tensor, n: number): tf.Tensor {
    const T = this.cos.shape[0];
    const B = x.shape[0] / T;
    return tf.transpose(tf.reshape(x, [B, T, n, this.c.headDim]), [0, 2, 1, 3]);
  }

  /** [B, n, T, hd] -> [N, n*hd]. */
  private unheads(x: tf.Tensor, B: number, T: number, n: number): tf.Tensor {
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B * T, n * this.c.headDim]);
  }

  /** x cos + rotate_half(x) sin, returned as [groups, rows, hd]. */
  private rope(x: tf.Tensor, groups: number, rows: number): tf.Tensor {
    const rotated = tf.reshape(tf.matMul(tf.reshape(x, [-1, this.c.headDim]), this.rot.wt), x.shape);
    return tf.reshape(tf.add(tf.mul(x, this.cos), tf.mul(rotated, this.sin)), [groups, rows, this.c.headDim]);
  }

  /** Gradient through rope: d cos + (d sin) R^T, as [B, n, T, hd]. */
  private ropeBack(d: tf.Tensor, B: number, n: number, T: number): tf.Tensor {
    const d4 = tf.reshape(d, [B, n, T, this.c.headDim]);
    const back = tf.reshape(tf.matMul(tf.reshape(tf.mul(d4, this.sin), [-1, this.c.headDim]), this.rot.w), d4.shape);
    return tf.add(tf.mul(d4, this.cos), back);
  }
}

/** [out, in] of a linear from its weight's name (`model.layers.N.<block>.<module>.weight`). */
function shapeOf(c: LlamaConfig, name: string): [number, number] {
  return linearShape(c, name.split(".").at(-2) as LinearModule);
}

function missing(name: string): never {
  throw new Error(`weight ${name} is missing`);
}
