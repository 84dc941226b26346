// The Llama forward pass (transformers' LlamaForCausalLM; Qwen2ForCausalLM adds q/k/v biases) as an ONNX
// graph. Activations are kept as [B*T, hidden] between blocks so every linear is one Gemm with transB on
// the [out, in] weight as stored in the checkpoint; attention reshapes to [B, heads, T, head_dim].
import type { LlamaConfig } from "../config.ts";
import { GraphBuilder } from "../onnx/builder.ts";
import { ElemType, type ModelProto } from "../onnx/proto.ts";
import { quantizeInt4, quantizeInt8, type QuantMode } from "../quantize.ts";
import { addGradientsFrom } from "../autodiff/driver.ts";
import { EMBED, FINAL_NORM, LM_HEAD, allLayers, expectedTensors, hasBias, linearName, linearShape, type LinearModule } from "./names.ts";
import { ropeInvFreq } from "./rope.ts";

/** Float32 weights by Hugging Face name. */
export type Weights = ReadonlyMap<string, Float32Array>;

/** A LoRA pair for one linear: A [r, in], B [out, r]; the update is scaling * B A. */
export interface LoraPair {
  a: Float32Array;
  b: Float32Array;
  r: number;
  scaling: number;
}

/** Tensors a graph takes as float inputs (trained, or fed at every run); the rest stay frozen. */
export interface TensorSpec {
  /** LoRA on these modules of every layer, as inputs `<linear>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]. */
  /** `fromLayer`: LoRA only on the layers from this index up (those a split client holds). */
  lora?: { r: number; scaling: number; modules: readonly LinearModule[]; dropout?: number; seed?: number; fromLayer?: number };
  /** Tensors as inputs in full, by Hugging Face name (float inputs even on a quantized base). */
  full?: readonly string[];
  /** Prefix embeddings `soft_prompt` [n, hidden] placed before the tokens (prompt tuning). */
  softPromptTokens?: number;
}

/** What a training graph trains. */
export interface TrainSpec extends TensorSpec {
  /**
   * Adds a distillation term to the loss (offsite-tuning's emulator distillation, Xiao et al. 2023): with
   * h the hidden state after decoder layer `afterLayer` (original index) and t the input teacher_hidden
   * [B,S,H], weight * sum over positions of distill_weights [B,S] * |h - t|^2 / |t|^2 (normalised MSE).
   */
  distill?: { afterLayer: number; weight: number };
  /** Inline soft prompts are for forward graphs (InputSpec). */
  softPromptInline?: never;
}

/** A split graph's spec: it starts from hidden states, so no soft prompt can go before the tokens. */
export type SplitSpec = TrainSpec & { softPromptTokens?: never };

/**
 * The tensors a forward graph takes as inputs: no loss, so no distillation; its LoRA runs without dropout.
 * With `softPromptInline` the soft prompt is not a prefix: input id vocabSize + k stands for its token k
 * wherever a row puts it (between an example and its label, say: a small causal model barely sees a
 * prefix 100 tokens back).
 */
export type InputSpec = TensorSpec & { distill?: never } & (
    | { softPromptInline?: false }
    | { softPromptTokens: number; softPromptInline: true }
  );

/** Frozen LoRA pairs by linear name (`model.layers.N.self_attn.q_proj`), e.g. a loaded adapter. */
export type FrozenLora = ReadonlyMap<string, LoraPair>;

/** Logits [B, S, V] over the whole model (or an emulator's layers). */
export interface ForwardGraph {
  kind: "forward";
  quant?: QuantMode;
  /** Adds a `targets` input and an `nll` output [B, S]. */
  nll?: boolean;
  lora?: FrozenLora;
  /**
   * Makes these tensors (LoRA pairs, full tensors, a soft prompt) graph inputs, fed at every run: a
   * black-box method evaluates candidate values without rebuilding the session.
   */
  inputs?: InputSpec;
  /**
   * The decoder layers to run, by original index, increasing (an offsite-tuning emulator: the adapter's
   * layers and a uniformly dropped middle); all layers by default.
   */
  layerIndices?: readonly number[];
}

/** A generation step: past_key_values inputs and present outputs besides the logits. */
export interface StepGraph {
  kind: "step";
  quant?: QuantMode;
  lora?: FrozenLora;
}

/**
 * The frozen trunk an endpoint serves: stops after `after` decoder layers and outputs `hidden` [B, S, hidden]
 * (transformers' hidden_states[after]: 0 is the embeddings) instead of logits.
 */
export interface HiddenGraph {
  kind: "hidden";
  quant?: QuantMode;
  after: number;
}

/**
 * A training graph: `targets` and `loss_weights` [B, S] inputs, the scalar output loss =
 * sum(nll * loss_weights), and `grad.<input>` for every trainable input; no logits output.
 */
export interface TrainGraph {
  kind: "train";
  quant?: QuantMode;
  spec: TrainSpec;
  /** As ForwardGraph's: an offsite-tuning emulator's layers. */
  layerIndices?: readonly number[];
}

/**
 * Split training's upper part: a training graph that starts at decoder layer `fromLayer` from a
 * `hidden_in` [B, S, hidden] input (the trunk's hidden states after as many layers, e.g. from an
 * endpoint) instead of token ids.
 */
export interface SplitGraph {
  kind: "split";
  quant?: QuantMode;
  spec: SplitSpec;
  fromLayer: number;
}

/** The graphs buildLlamaGraph makes: each kind takes only the options that apply to it. */
export type GraphKind = ForwardGraph | StepGraph | HiddenGraph | TrainGraph | SplitGraph;

export interface TrainableTensor {
  name: string;
  shape: number[];
}

export const SOFT_PROMPT = "soft_prompt";

/** The trainable graph inputs a spec makes, in a fixed order. */
export function trainableTensors(c: LlamaConfig, spec: TensorSpec, layers: readonly number[] = allLayers(c)): TrainableTensor[] {
  const out: TrainableTensor[] = [];
  if (spec.softPromptTokens) out.push({ name: SOFT_PROMPT, shape: [spec.softPromptTokens, c.hiddenSize] });
  const expected = expectedTensors(c, layers);
  for (const name of spec.full ?? []) {
    const shape = expected.get(name);
    if (!shape) throw new Error(`cannot train "${name}": not a tensor of this model`);
    out.push({ name, shape });
  }
  if (spec.lora)
    for (const l of layers.filter((x) => x >= (spec.lora!.fromLayer ?? 0)))
      for (const m of spec.lora.modules) {
        const [o, i] = linearShape(c, m);
        out.push(
          { name: `${linearName(l, m)}.lora_A.weight`, shape: [spec.lora.r, i] },
          { name: `${linearName(l, m)}.lora_B.weight`, shape: [o, spec.lora.r] },
        );
      }
  return out;
}

/**
 * Graph inputs: input_ids [B,T] int64 (hidden_in [B,S,hidden] for a split graph); position_ids [B,S] int64
 * and attention_bias [B,1,S,past+S] float (0 where a query may attend, a large negative number elsewhere;
 * see masks.ts), where S = T plus the soft prompt's length; targets [B,S] int64 with nll and in training
 * graphs; past_key.N / past_value.N [B,kvHeads,P,headDim] in a step graph; the input tensors of the spec.
 * Outputs: logits [B,S,V] (forward and step); nll [B,S]; present_key.N / present_value.N; hidden; loss and grad.*.
 */
export function buildLlamaGraph(config: LlamaConfig, weights: Weights, opts: GraphKind = { kind: "forward" }): ModelProto {
  const c = config;
  const quant = opts.quant ?? "f32";
  const train = opts.kind === "train" || opts.kind === "split" ? opts.spec : undefined;
  const inputs = opts.kind === "forward" ? opts.inputs : undefined;
  const frozenLora = opts.kind === "forward" || opts.kind === "step" ? opts.lora : undefined;
  const kvCache = opts.kind === "step";
  const split = opts.kind === "split";
  // The tensors that are graph inputs: trained, or fed (e.g. perturbed) at every run.
  const spec: TensorSpec | undefined =
    train ?? (inputs ? { ...inputs, ...(inputs.lora ? { lora: { ...inputs.lora, dropout: 0 } } : {}) } : undefined);
  const inline = inputs?.softPromptInline ? inputs.softPromptTokens : 0;
  const g = new GraphBuilder(train ? "llama_train" : "llama_forward");
  const fromLayer = split ? opts.fromLayer : 0;
  if (!Number.isInteger(fromLayer) || fromLayer < 0 || fromLayer > c.numLayers)
    throw new Error(`fromLayer must be an integer in [0, ${c.numLayers}], got ${fromLayer}`);
  const inputIds = split ? "" : g.input("input_ids", ElemType.INT64, ["batch", "tokens"]);
  const positionIds = g.input("position_ids", ElemType.INT64, ["batch", "seq"]);
  const bias = g.input("attention_bias", ElemType.FLOAT, ["batch", 1, "seq", "total"]);
  const positions = (opts.kind === "forward" || opts.kind === "train" ? opts.layerIndices : undefined) ?? allLayers(c);
  positions.forEach((l, p) => {
    if (!Number.isInteger(l) || l < 0 || l >= c.numLayers || (p > 0 && l <= positions[p - 1]!))
      throw new Error(`layerIndices must increase within [0, ${c.numLayers}), got ${JSON.stringify(positions)}`);
  });
  const trainables = spec ? trainableTensors(c, spec, positions) : [];
  const trainable = new Set(trainables.map((t) => t.name));
  for (const t of trainables) g.input(t.name, ElemType.FLOAT, t.shape);
  const weight = (name: string): Float32Array => {
    const w = weights.get(name);
    if (!w) throw new Error(`weight ${name} is missing`);
    return w;
  };
  const f32 = (name: string, dims: number[], data: Float32Array) => g.initializer(name, ElemType.FLOAT, dims, bytesOf(data));
  /** A float tensor by HF name: the trainable input, or a frozen initializer. */
  const tensor = (name: string, dims: number[]) => (trainable.has(name) ? name : f32(name, dims, weight(name)));

  // [B, S] as a tensor, to rebuild [B, S, ...] shapes from the flat [B*S, ...] activations.
  const bs = g.op("Shape", [positionIds]);
  const shapeBS = (...rest: number[]) => g.op("Concat", [bs, g.ints(...rest)], { axis: 0 });

  // A frozen [out, in] matrix as a float value, dequantized in the graph when quantized.
  const frozenMatrix = (name: string, rows: number, cols: number, mode: QuantMode): string => {
    if (trainable.has(name)) return name;
    const w = weight(name);
    if (mode === "int8") {
      const q = quantizeInt8(w, rows, cols);
      const qName = g.initializer(`${name}.q8`, ElemType.INT8, [rows, cols], new Uint8Array(q.q.buffer));
      return g.op("DequantizeLinear", [qName, f32(`${name}.scale`, [rows], q.scale)], { axis: 0 });
    }
    if (mode === "int4") {
      const q = quantizeInt4(w, rows, cols);
      const qName = g.initializer(`${name}.q4`, ElemType.INT4, [rows, cols], q.packed);
      return g.op("DequantizeLinear", [qName, f32(`${name}.scale`, [rows, q.scale.length / rows], q.scale)], { axis: 1, block_size: 32 });
    }
    return f32(name, [rows, cols], w);
  };

  // A bias is Gemm's C input (float32 even on a quantized base); none is added where the linear has none.
  const gemmT = (x: string, w: string, b?: string) => g.op("Gemm", b ? [x, w, b] : [x, w], { transB: 1 });
  let dropoutCount = 0;

  const linear = (x: string, layer: number, module: LinearModule): string => {
    const name = linearName(layer, module);
    const [out, inp] = linearShape(c, module);
    // The bias belongs to the base (frozen, as PEFT leaves it); LoRA's update is added to the biased output.
    const y = gemmT(x, frozenMatrix(`${name}.weight`, out, inp, quant), hasBias(c, module) ? tensor(`${name}.bias`, [out]) : undefined);
    const frozen = frozenLora?.get(name);
    let delta: string | null = null;
    let scaling = 0;
    if (frozen) {
      delta = gemmT(
        gemmT(x, f32(`${name}.lora_A.weight`, [frozen.r, inp], frozen.a)),
        f32(`${name}.lora_B.weight`, [out, frozen.r], frozen.b),
      );
      scaling = frozen.scaling;
    } else if (spec?.lora?.modules.includes(module) && layer >= (spec.lora.fromLayer ?? 0)) {
      // PEFT drops the LoRA branch's input (lora_dropout); each module draws its own mask.
      const p = spec.lora.dropout ?? 0;
      const dropped =
        p > 0
          ? g.opN("Dropout", [x, g.scalar(p), g.bool(true)], { seed: (spec.lora.seed ?? 0) * 1000 + dropoutCount++ }, { outputs: 2 })[0]!
          : x;
      delta = gemmT(gemmT(dropped, `${name}.lora_A.weight`), `${name}.lora_B.weight`);
      scaling = spec.lora.scaling;
    }
    return delta ? g.op("Add", [y, g.op("Mul", [delta, g.scalar(scaling)])]) : y;
  };

  // RMSNorm in float32 as LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w.
  const rmsNorm = (x: string, name: string): string => {
    const ms = g.op("ReduceMean", [g.op("Mul", [x, x]), g.ints(-1)], { keepdims: 1 });
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(c.rmsNormEps)])])]);
    return g.op("Mul", [g.op("Mul", [x, inv]), tensor(name, [c.hiddenSize])]);
  };

  // Embedding: the table is int8 per row when the base is quantized (Gather cannot read int4) and the
  // table is frozen; a tied head reads the same table.
  // The embedding (only where the graph starts from token ids; a split graph needs the table only for a tied head).
  let h: string;
  let tiedHead: () => string;
  const flatInputIds = inputIds && g.op("Reshape", [inputIds, g.ints(-1)]);
  // Inline soft-prompt ids (>= vocabSize) read the table's last row, then take their soft-prompt row.
  const tokenIds = () => (inline ? g.op("Min", [flatInputIds, g.ints(c.vocabSize - 1)]) : flatInputIds);
  if (quant === "f32" || trainable.has(EMBED)) {
    const table = c.tieWordEmbeddings || !split ? tensor(EMBED, [c.vocabSize, c.hiddenSize]) : "";
    h = inputIds && g.op("Gather", [table, tokenIds()], { axis: 0 });
    tiedHead = () => table;
  } else {
    const q = quantizeInt8(weight(EMBED), c.vocabSize, c.hiddenSize);
    const qName = g.initializer(`${EMBED}.q8`, ElemType.INT8, [c.vocabSize, c.hiddenSize], new Uint8Array(q.q.buffer));
    const scale = f32(`${EMBED}.scale`, [c.vocabSize], q.scale);
    if (inputIds) {
      const flatIds = tokenIds();
      const rows = g.op("Cast", [g.op("Gather", [qName, flatIds], { axis: 0 })], { to: ElemType.FLOAT });
      h = g.op("Mul", [rows, g.op("Unsqueeze", [g.op("Gather", [scale, flatIds], { axis: 0 }), g.ints(-1)])]);
    } else h = "";
    tiedHead = () => g.op("DequantizeLinear", [qName, scale], { axis: 0 });
  }
  if (split) h = g.op("Reshape", [g.input("hidden_in", ElemType.FLOAT, ["batch", "seq", c.hiddenSize]), g.ints(-1, c.hiddenSize)]);
  if (inline) {
    const isPrompt = g.op("Unsqueeze", [g.op("GreaterOrEqual", [flatInputIds, g.ints(c.vocabSize)]), g.ints(-1)]);
    const promptRows = g.op("Gather", [SOFT_PROMPT, g.op("Max", [g.op("Sub", [flatInputIds, g.ints(c.vocabSize)]), g.ints(0)])], {
      axis: 0,
    });
    h = g.op("Where", [isPrompt, promptRows, h]);
  } else if (spec?.softPromptTokens) {
    // Every row gets the same trainable prefix (Lester et al. 2021): [B, n, H] ++ [B, T, H].
    const batch = g.op("Gather", [bs, g.ints(0)], { axis: 0 });
    const prefix = g.op("Expand", [
      g.op("Unsqueeze", [SOFT_PROMPT, g.ints(0)]),
      g.op("Concat", [batch, g.ints(spec.softPromptTokens, c.hiddenSize)], { axis: 0 }),
    ]);
    const tokens = g.op("Reshape", [h, g.op("Concat", [batch, g.ints(-1, c.hiddenSize)], { axis: 0 })]);
    h = g.op("Reshape", [g.op("Concat", [prefix, tokens], { axis: 1 }), g.ints(-1, c.hiddenSize)]);
  }

  // cos/sin [B, 1, S, D] from position ids, rotate_half convention: freqs repeated, not interleaved.
  const invFreq = f32("rope.inv_freq", [c.headDim / 2], Float32Array.from(ropeInvFreq(c)));
  const pos = g.op("Unsqueeze", [g.op("Cast", [positionIds], { to: ElemType.FLOAT }), g.ints(-1)]);
  const freqs = g.op("Mul", [pos, invFreq]);
  const emb = g.op("Unsqueeze", [g.op("Concat", [freqs, freqs], { axis: -1 }), g.ints(1)]);
  const cos = g.op("Cos", [emb]);
  const sin = g.op("Sin", [emb]);
  const half = g.ints(c.headDim / 2, c.headDim / 2);
  const rope = (x: string): string => {
    const [x1, x2] = g.opN("Split", [x, half], { axis: -1 }, { outputs: 2 });
    const rotated = g.op("Concat", [g.op("Neg", [x2!]), x1!], { axis: -1 });
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])]);
  };

  const heads = (x: string, n: number) => g.op("Transpose", [g.op("Reshape", [x, shapeBS(n, c.headDim)])], { perm: [0, 2, 1, 3] });
  const nRep = c.numHeads / c.numKvHeads;
  // GQA: each kv head serves nRep consecutive query heads (transformers' repeat_kv).
  const repeatKv = (x: string): string =>
    nRep === 1
      ? x
      : g.op("Reshape", [
          g.op("Expand", [g.op("Unsqueeze", [x, g.ints(2)]), g.ints(1, 1, nRep, 1, 1)]),
          g.ints(0, c.numHeads, -1, c.headDim),
        ]);
  const invSqrtD = g.scalar(1 / Math.sqrt(c.headDim));

  const layers = opts.kind === "hidden" ? opts.after : c.numLayers;
  if (!Number.isInteger(layers) || layers < 0 || layers > c.numLayers)
    throw new Error(`a hidden graph's after must be an integer in [0, ${c.numLayers}], got ${layers}`);
  if (train?.distill && !positions.slice(fromLayer, layers).includes(train.distill.afterLayer))
    throw new Error(`distill.afterLayer ${train.distill.afterLayer} is not a layer this graph runs`);
  let distilled = "";
  for (const l of positions.slice(fromLayer, layers)) {
    const x = rmsNorm(h, `model.layers.${l}.input_layernorm.weight`);
    const q = rope(heads(linear(x, l, "q_proj"), c.numHeads));
    let k = rope(heads(linear(x, l, "k_proj"), c.numKvHeads));
    let v = heads(linear(x, l, "v_proj"), c.numKvHeads);
    if (kvCache) {
      const kvShape = ["batch", c.numKvHeads, "past", c.headDim];
      k = g.op("Concat", [g.input(`past_key.${l}`, ElemType.FLOAT, kvShape), k], { axis: 2 }, { outputs: [`present_key.${l}`] });
      v = g.op("Concat", [g.input(`past_value.${l}`, ElemType.FLOAT, kvShape), v], { axis: 2 }, { outputs: [`present_value.${l}`] });
      g.output(`present_key.${l}`, ElemType.FLOAT, ["batch", c.numKvHeads, "total", c.headDim]);
      g.output(`present_value.${l}`, ElemType.FLOAT, ["batch", c.numKvHeads, "total", c.headDim]);
    }
    const scores = g.op("Add", [
      g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [repeatKv(k)], { perm: [0, 1, 3, 2] })]), invSqrtD]),
      bias,
    ]);
    const attn = g.op("MatMul", [g.op("Softmax", [scores], { axis: -1 }), repeatKv(v)]);
    const merged = g.op("Reshape", [g.op("Transpose", [attn], { perm: [0, 2, 1, 3] }), g.ints(-1, c.numHeads * c.headDim)]);
    h = g.op("Add", [h, linear(merged, l, "o_proj")]);

    const y = rmsNorm(h, `model.layers.${l}.post_attention_layernorm.weight`);
    const gate = linear(y, l, "gate_proj");
    const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), linear(y, l, "up_proj")]);
    h = g.op("Add", [h, linear(act, l, "down_proj")]);
    if (l === train?.distill?.afterLayer) distilled = h;
  }

  if (opts.kind === "hidden") {
    g.op("Reshape", [h, shapeBS(c.hiddenSize)], {}, { outputs: ["hidden"] });
    g.output("hidden", ElemType.FLOAT, ["batch", "seq", c.hiddenSize]);
    return g.toModel();
  }
  const final = rmsNorm(h, FINAL_NORM);
  const head = c.tieWordEmbeddings ? tiedHead() : frozenMatrix(LM_HEAD, c.vocabSize, c.hiddenSize, quant === "f32" ? "f32" : "int8");
  const logits2d = gemmT(final, head);
  if (!train) {
    g.op("Reshape", [logits2d, shapeBS(c.vocabSize)], {}, { outputs: ["logits"] });
    g.output("logits", ElemType.FLOAT, ["batch", "seq", c.vocabSize]);
  }
  if ((opts.kind === "forward" && opts.nll) || train) {
    const targets = g.input("targets", ElemType.INT64, ["batch", "seq"]);
    const logp = g.op("LogSoftmax", [logits2d], { axis: -1 });
    const picked = g.op("GatherElements", [logp, g.op("Reshape", [targets, g.ints(-1, 1)])], { axis: 1 });
    const nll = g.op("Reshape", [g.op("Neg", [picked]), bs], {}, { outputs: ["nll"] });
    g.output("nll", ElemType.FLOAT, ["batch", "seq"]);
    if (train) {
      const lossWeights = g.input("loss_weights", ElemType.FLOAT, ["batch", "seq"]);
      const lmLoss = g.op("ReduceSum", [g.op("Mul", [nll, lossWeights])], { keepdims: 0 });
      const seeds = new Map<string, string>();
      if (train.distill) {
        // Its gradient written directly: d/dh = weight * w * 2 (h - t) / |t|^2 (t is a constant).
        const teacher = g.op("Reshape", [
          g.input("teacher_hidden", ElemType.FLOAT, ["batch", "seq", c.hiddenSize]),
          g.ints(-1, c.hiddenSize),
        ]);
        const w = g.op("Reshape", [g.input("distill_weights", ElemType.FLOAT, ["batch", "seq"]), g.ints(-1)]);
        const diff = g.op("Sub", [distilled, teacher]);
        const sq = (x: string) => g.op("ReduceSum", [g.op("Mul", [x, x]), g.ints(1)], { keepdims: 0 });
        const perPosition = g.op("Div", [w, g.op("Add", [sq(teacher), g.scalar(1e-12)])]);
        const term = g.op("Mul", [
          g.op("ReduceSum", [g.op("Mul", [sq(diff), perPosition])], { keepdims: 0 }),
          g.scalar(train.distill.weight),
        ]);
        g.op("Identity", [term], {}, { outputs: ["distill_loss"] });
        g.output("distill_loss", ElemType.FLOAT, []);
        g.op("Add", [lmLoss, term], {}, { outputs: ["loss"] });
        seeds.set(
          distilled,
          g.op("Mul", [g.op("Mul", [diff, g.op("Unsqueeze", [perPosition, g.ints(-1)])]), g.scalar(2 * train.distill.weight)]),
        );
      } else g.op("Identity", [lmLoss], {}, { outputs: ["loss"] });
      g.output("loss", ElemType.FLOAT, []);
      // d loss / d logits = w (softmax - onehot(target)), written directly: three passes over the
      // [N, V] logits instead of the six that differentiating LogSoftmax and GatherElements takes.
      const w = g.op("Reshape", [lossWeights, g.ints(-1, 1)]);
      const flatTargets = g.op("Reshape", [targets, g.ints(-1, 1)]);
      const dLogits = g.op("ScatterElements", [g.op("Mul", [g.op("Exp", [logp]), w]), flatTargets, g.op("Neg", [w])], {
        axis: 1,
        reduction: "add",
      });
      seeds.set(logits2d, dLogits);
      for (const [name, grad] of addGradientsFrom(
        g,
        seeds,
        trainables.map((t) => t.name),
      )) {
        g.op("Identity", [grad], {}, { outputs: [`grad.${name}`] });
        g.output(`grad.${name}`, ElemType.FLOAT, trainables.find((t) => t.name === name)!.shape);
      }
    }
  }
  return g.toModel();
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
