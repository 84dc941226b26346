// The Llama forward pass (transformers' LlamaForCausalLM; Qwen2ForCausalLM adds q/k/v biases) as an ONNX
// graph. Activations are kept as [B*T, hidden] between blocks so every linear is one Gemm with transB on
// the [out, in] weight as stored in the checkpoint; attention reshapes to [B, heads, T, head_dim].
import type { LlamaConfig } from "../config.ts";
import { type BuilderOptions, GraphBuilder } from "../onnx/builder.ts";
import type { Runtime, Session } from "../runtime.ts";
import { ElemType } from "../onnx/proto.ts";
import { type BaseTensor, floatOf, quantizeInt4, quantizeInt8, type QuantMode, type QuantWeight } from "../quantize.ts";
import { addGradientsFrom } from "../autodiff/driver.ts";
import { EMBED, FINAL_NORM, LM_HEAD, allLayers, expectedTensors, hasBias, linearName, linearShape, type LinearModule } from "./names.ts";
import { ropeInvFreq } from "./rope.ts";

/** Base weights by Hugging Face name: float32, or matrices a pre-quantized checkpoint stores quantized. */
export type Weights = ReadonlyMap<string, BaseTensor>;

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
  /** `modules`: a rank and a scaling by linear name where they are not r and scaling (PEFT's rank_pattern, alpha_pattern). */
  lora?: {
    r: number;
    scaling: number;
    modules: readonly LinearModule[];
    dropout?: number;
    seed?: number;
    fromLayer?: number;
    patterns?: Readonly<Record<string, { r: number; scaling: number }>>;
  };
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
  /**
   * The loss's softmax over these token ids only (a verbalizer's label words, as prompt-based fine-tuning
   * trains them: LM-BFF, Gao et al. 2021): logits from their rows of the head alone, so no [N, V] tensor
   * exists, and a target among them is scored against the others. A weighted target outside them is an
   * error of the caller's: it scores as the first id.
   */
  vocabulary?: readonly number[];
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
  /**
   * Adds the completions API's log-probs (`echo` with `logprobs: k`) as sampling.ts's logSoftmax and topK
   * compute them from the logits, so no per-token pass over the vocabulary runs on the host. Inputs
   * `targets` [B, S], `top_k` [1] int64 (at least 1: ONNX TopK's K is positive) and `last_rows` [B] int64
   * (each row's last real position, as an index into the B·S positions); outputs `target_logprobs`
   * [B, S], `top_logprobs` [B, S, K] and `top_ids` [B, S, K] int64 (largest first, ties by lower id, as
   * the ONNX spec orders TopK's), and `last_logits` [B, V] to sample a next token from.
   */
  logprobs?: boolean;
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

/** An int8 [V, H] table as its quantized values and per-row scales (graph value names). */
interface QuantHead {
  q: string;
  scale: string;
}
/** The head's weights: a float value, or an int8 table multiplied chunk by chunk. */
type Head = { float: string } | QuantHead;

/** The float bytes of one chunk of a quantized head (quantizedLogits). */
const HEAD_CHUNK_BYTES = 2 * 2 ** 20;

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
        const r = spec.lora.patterns?.[linearName(l, m)]?.r ?? spec.lora.r;
        out.push(
          { name: `${linearName(l, m)}.lora_A.weight`, shape: [r, i] },
          { name: `${linearName(l, m)}.lora_B.weight`, shape: [o, r] },
        );
      }
  return out;
}

/**
 * Graph inputs: input_ids [B,T] int64 (hidden_in [B,S,hidden] for a split graph); position_ids [B,S] int64
 * and attention_bias [B,1,S,past+S] float (0 where a query may attend, a large negative number elsewhere;
 * see masks.ts), where S = T plus the soft prompt's length; targets [B,S] int64 with nll or logprobs and
 * in training graphs; past_key.N / past_value.N [B,kvHeads,P,headDim] in a step graph; the input tensors
 * of the spec; top_k and last_rows with logprobs.
 * Outputs: logits [B,S,V] (forward and step); nll [B,S]; target_logprobs, top_logprobs, top_ids and last_logits
 * with logprobs; present_key.N / present_value.N; hidden; loss and grad.*.
 */
export function buildLlamaGraph(config: LlamaConfig, weights: Weights, opts: GraphKind = { kind: "forward" }): Uint8Array {
  return llamaGraph(config, weights, opts).toBytes();
}

/** Initializers from this size up are external data on runtimes that want it (64 KiB: every weight matrix, no small constant). */
const EXTERNAL_ABOVE = 64 * 1024;

/** A session of the graph on `runtime`, its weights as external data where the runtime asks for that (ORT-web). */
export async function llamaSession(runtime: Runtime, config: LlamaConfig, weights: Weights, opts: GraphKind): Promise<Session> {
  const g = llamaGraph(config, weights, opts, runtime.externalWeights ? { externalAbove: EXTERNAL_ABOVE } : {});
  // Prepacking copies constant float weights; a graph on a quantized base has none (SessionChoices).
  const floatBase = (opts.quant ?? "f32") === "f32" && [...weights.values()].every((w) => w instanceof Float32Array);
  return runtime.createSession(g.toBytes(), g.external, { prepack: !(floatBase && runtime.externalWeights) });
}

function llamaGraph(config: LlamaConfig, weights: Weights, opts: GraphKind, build: BuilderOptions = {}): GraphBuilder {
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
  const g = new GraphBuilder(train ? "llama_train" : "llama_forward", ElemType.FLOAT, build);
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
  const stored = (name: string): BaseTensor => {
    const w = weights.get(name);
    if (!w) throw new Error(`weight ${name} is missing`);
    return w;
  };
  const weight = (name: string): Float32Array => floatOf(stored(name));
  const f32 = (name: string, dims: number[], data: Float32Array) => g.initializer(name, ElemType.FLOAT, dims, bytesOf(data));
  /** A float tensor by HF name: the trainable input, or a frozen initializer. */
  const tensor = (name: string, dims: number[]) => (trainable.has(name) ? name : f32(name, dims, weight(name)));

  // [B, S] as a tensor, to rebuild [B, S, ...] shapes from the flat [B*S, ...] activations.
  const bs = g.op("Shape", [positionIds]);
  const shapeBS = (...rest: number[]) => g.op("Concat", [bs, g.ints(...rest)], { axis: 0 });

  // Float copies of quantized weights live only while they are multiplied:
  // - ORT may run a node as soon as its inputs exist, and a dequantization reads only weights, so it could
  //   run at the start and its output live until its reader; its scales are therefore sliced from a start
  //   that depends on `dep`, the activation the weight multiplies, so it waits for that activation;
  // - a training graph's backward pass dequantizes the weights it needs again (rematerializes them) rather
  //   than keeping the forward pass's copies alive; the copy counts its axes from the end, so that ORT's
  //   common-subexpression elimination cannot merge it back into the forward node.
  const after = (start: number, dep: string) => g.op("Concat", [g.ints(start), g.op("Shape", [dep], { start: 0, end: 0 })], { axis: 0 });
  const slice = (x: string, rank: number, start: number, end: number, dep: string, neg: boolean) =>
    g.op("Slice", [x, after(start, dep), g.ints(end), g.ints(neg ? -rank : 0)]);
  const remat = new Map<string, (dep: string) => string>();
  const dequantized = (
    inputs: (neg: boolean, dep: string) => string[],
    dep: string,
    axis: number,
    rank: number,
    attrs: Record<string, number> = {},
  ): string => {
    const make = (neg: boolean, d: string) => g.op("DequantizeLinear", inputs(neg, d), { ...attrs, axis: neg ? axis - rank : axis });
    const out = make(false, dep);
    remat.set(out, (d) => make(true, d));
    return out;
  };

  // A frozen [out, in] matrix as a float value, dequantized in the graph when quantized: as the checkpoint
  // stores it when pre-quantized (whatever `mode` asks), else quantized here to `mode`.
  const frozenMatrix = (name: string, rows: number, cols: number, mode: QuantMode, dep: string): string => {
    if (trainable.has(name)) return name;
    const w = stored(name);
    const q: QuantWeight | Float32Array =
      w instanceof Float32Array && mode !== "f32" ? (mode === "int8" ? quantizeInt8(w, rows, cols) : quantizeInt4(w, rows, cols)) : w;
    if (q instanceof Float32Array) return f32(name, [rows, cols], q);
    if (q.kind === "int8") {
      const qName = g.initializer(`${name}.q8`, ElemType.INT8, [rows, cols], bytesOf(q.q));
      const scale = f32(`${name}.scale`, [rows], q.scale);
      return dequantized((neg, d) => [qName, slice(scale, 1, 0, rows, d, neg)], dep, 0, 2);
    }
    const qName = g.initializer(`${name}.q4`, ElemType.INT4, [rows, cols], q.packed);
    const scale = f32(`${name}.scale`, [rows, q.scale.length / rows], q.scale);
    return dequantized((neg, d) => [qName, slice(scale, 2, 0, rows, d, neg)], dep, 1, 2, { block_size: 32 });
  };

  // An int8 [V, H] head in chunks of rows, each dequantized when used: the float head (113 MB for a
  // 49,152 x 576 vocabulary) never exists whole, only one chunk of about HEAD_CHUNK_BYTES at a time.
  const headChunks = (t: QuantHead): { start: number; end: number; weight: (dep: string) => string }[] => {
    const rows = Math.ceil(c.vocabSize / Math.ceil((c.vocabSize * c.hiddenSize * 4) / HEAD_CHUNK_BYTES));
    return Array.from({ length: Math.ceil(c.vocabSize / rows) }, (_, k) => {
      const [start, end] = [k * rows, Math.min(c.vocabSize, (k + 1) * rows)];
      const weight = (dep: string) =>
        dequantized((neg, d) => [slice(t.q, 2, start, end, d, neg), slice(t.scale, 1, start, end, d, neg)], dep, 0, 2);
      return { start, end, weight };
    });
  };

  /**
   * The negative log-likelihood [N, 1] of the targets [N, 1] under an int8 head, a chunk of the vocabulary
   * at a time (as cut cross-entropy, Wijmans et al. 2025): each chunk's logits are reduced to a running
   * log-sum-exp and the target's logit and dropped before the next chunk is dequantized, so no [N, V]
   * tensor exists; `backward` makes each chunk's logits again and returns d(sum(nll * w)) / dx for weights w [N, 1].
   */
  const chunkedNll = (x: string, t: QuantHead, targets: string) => {
    const zero = g.scalar(0);
    // [log-sum-exp so far, target logit so far] per position: each chunk waits for it.
    let state = "";
    const chunks = headChunks(t).map(({ start, end, weight }) => {
      const inChunk = g.op("And", [g.op("GreaterOrEqual", [targets, g.ints(start)]), g.op("Less", [targets, g.ints(end)])]);
      const index = g.op("Clip", [g.op("Sub", [targets, g.ints(start)]), g.ints(0), g.ints(end - start - 1)]);
      const w = weight(state || x);
      const logits = gemmT(x, w);
      const lse = g.op("ReduceLogSumExp", [logits, g.ints(1)], { keepdims: 1 });
      const picked = g.op("Where", [inChunk, g.op("GatherElements", [logits, index], { axis: 1 }), zero]);
      const [before, target] = state ? g.opN("Split", [state, g.ints(1, 1)], { axis: 1 }, { outputs: 2 }) : ["", ""];
      state = g.op(
        "Concat",
        [
          before ? g.op("ReduceLogSumExp", [g.op("Concat", [before, lse], { axis: 1 }), g.ints(1)], { keepdims: 1 }) : lse,
          target ? g.op("Add", [target!, picked]) : picked,
        ],
        { axis: 1 },
      );
      return { weight: w, inChunk, index };
    });
    const [lse, target] = g.opN("Split", [state, g.ints(1, 1)], { axis: 1 }, { outputs: 2 });
    const nll = g.op("Sub", [lse!, target!]);
    const backward = (w: string): string => {
      // A chunk at a time: its weights are dequantized again once the previous chunk's sum exists, and
      // the sum grows as a chain of Gemms with C, so one chunk's terms are alive at a time.
      let dx = "";
      for (const k of chunks) {
        const weight = remat.get(k.weight)!(dx || w);
        const probs = g.op("Mul", [g.op("Exp", [g.op("Sub", [gemmT(x, weight), lse!])]), w]);
        const onehot = g.op("Where", [k.inChunk, g.op("Neg", [w]), zero]);
        const dLogits = g.op("ScatterElements", [probs, k.index, onehot], { axis: 1, reduction: "add" });
        dx = g.op("Gemm", dx ? [dLogits, weight, dx] : [dLogits, weight]);
      }
      return dx;
    };
    return { nll, backward };
  };

  // A verbalizer's words (TrainSpec.vocabulary): their rows of the head, as the embedding lookup reads an int8
  // table, and each target as its index among them (the first where it is none).
  const vocabularyOf = (ids: readonly number[]) => {
    if (ids.length < 2 || new Set(ids).size !== ids.length || ids.some((id) => !Number.isInteger(id) || id < 0 || id >= c.vocabSize))
      throw new Error(`a training vocabulary needs at least 2 distinct token ids in [0, ${c.vocabSize}), got ${JSON.stringify(ids)}`);
    const list = g.initializer("vocabulary", ElemType.INT64, [ids.length], bytesOf(BigInt64Array.from(ids.map(BigInt))));
    const rows = (t: Head) =>
      "float" in t
        ? g.op("Gather", [t.float, list], { axis: 0 })
        : g.op("Mul", [
            g.op("Cast", [g.op("Gather", [t.q, list], { axis: 0 })], { to: ElemType.FLOAT }),
            g.op("Unsqueeze", [g.op("Gather", [t.scale, list], { axis: 0 }), g.ints(-1)]),
          ]);
    const index = (targets: string) => {
      const hit = g.op("Equal", [g.op("Reshape", [targets, g.ints(-1, 1)]), g.op("Unsqueeze", [list, g.ints(0)])]);
      return g.op("ArgMax", [g.op("Cast", [hit], { to: ElemType.FLOAT })], { axis: 1, keepdims: 1 });
    };
    return { rows, index };
  };

  // A bias is Gemm's C input (float32 even on a quantized base); none is added where the linear has none.
  const gemmT = (x: string, w: string, b?: string) => g.op("Gemm", b ? [x, w, b] : [x, w], { transB: 1 });
  let dropoutCount = 0;

  const linear = (x: string, layer: number, module: LinearModule): string => {
    const name = linearName(layer, module);
    const [out, inp] = linearShape(c, module);
    // The bias belongs to the base (frozen, as PEFT leaves it); LoRA's update is added to the biased output.
    const y = gemmT(x, frozenMatrix(`${name}.weight`, out, inp, quant, x), hasBias(c, module) ? tensor(`${name}.bias`, [out]) : undefined);
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
      scaling = spec.lora.patterns?.[name]?.scaling ?? spec.lora.scaling;
    }
    return delta ? g.op("Add", [y, g.op("Mul", [delta, g.scalar(scaling)])]) : y;
  };

  // RMSNorm in float32 as LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w.
  const rmsNorm = (x: string, name: string): string => {
    const ms = g.op("ReduceMean", [g.op("Mul", [x, x]), g.ints(-1)], { keepdims: 1 });
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(c.rmsNormEps)])])]);
    return g.op("Mul", [g.op("Mul", [x, inv]), tensor(name, [c.hiddenSize])]);
  };

  // A frozen int8 [V, H] table (the embedding, or an untied head), per row: as stored, or quantized here.
  const int8Table = (name: string): QuantHead => {
    const w = stored(name);
    const q = !(w instanceof Float32Array) && w.kind === "int8" ? w : quantizeInt8(weight(name), c.vocabSize, c.hiddenSize);
    const qName = g.initializer(`${name}.q8`, ElemType.INT8, [c.vocabSize, c.hiddenSize], bytesOf(q.q));
    return { q: qName, scale: f32(`${name}.scale`, [c.vocabSize], q.scale) };
  };
  // The embedding, where the graph starts from token ids (a split graph needs the table only for a tied
  // head): int8 per row when the base is quantized (Gather cannot read int4) and the table is frozen.
  let h = "";
  let tiedTable: Head | null = null;
  const flatInputIds = inputIds && g.op("Reshape", [inputIds, g.ints(-1)]);
  // Inline soft-prompt ids (>= vocabSize) read the table's last row, then take their soft-prompt row.
  const tokenIds = () => (inline ? g.op("Min", [flatInputIds, g.ints(c.vocabSize - 1)]) : flatInputIds);
  if (inputIds || c.tieWordEmbeddings) {
    if (trainable.has(EMBED) || (quant === "f32" && stored(EMBED) instanceof Float32Array)) {
      tiedTable = { float: tensor(EMBED, [c.vocabSize, c.hiddenSize]) };
      if (inputIds) h = g.op("Gather", [tiedTable.float, tokenIds()], { axis: 0 });
    } else {
      const t = int8Table(EMBED);
      tiedTable = t;
      if (inputIds) {
        const flatIds = tokenIds();
        const rows = g.op("Cast", [g.op("Gather", [t.q, flatIds], { axis: 0 })], { to: ElemType.FLOAT });
        h = g.op("Mul", [rows, g.op("Unsqueeze", [g.op("Gather", [t.scale, flatIds], { axis: 0 }), g.ints(-1)])]);
      }
    }
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
    return g;
  }
  const final = rmsNorm(h, FINAL_NORM);
  const head: Head = c.tieWordEmbeddings
    ? tiedTable!
    : trainable.has(LM_HEAD) || (quant === "f32" && stored(LM_HEAD) instanceof Float32Array)
      ? { float: tensor(LM_HEAD, [c.vocabSize, c.hiddenSize]) }
      : int8Table(LM_HEAD);
  const vocabulary = train?.vocabulary ? vocabularyOf(train.vocabulary) : null;
  // A training graph on an int8 head never makes the [N, V] logits (chunkedNll); other graphs do.
  const chunked = train && !vocabulary && !("float" in head);
  const logits2d = chunked
    ? ""
    : vocabulary
      ? gemmT(final, vocabulary.rows(head))
      : "float" in head
        ? gemmT(final, head.float)
        : g.op(
            "Concat",
            headChunks(head).map((k) => gemmT(final, k.weight(final))),
            { axis: 1 },
          );
  if (!train) {
    g.op("Reshape", [logits2d, shapeBS(c.vocabSize)], {}, { outputs: ["logits"] });
    g.output("logits", ElemType.FLOAT, ["batch", "seq", c.vocabSize]);
  }
  const scored = opts.kind === "forward" && (opts.nll || opts.logprobs);
  const targets = scored || train ? g.input("targets", ElemType.INT64, ["batch", "seq"]) : "";
  if (opts.kind === "forward" && opts.logprobs) {
    // One fused float32 LogSoftmax pass over [B·S, V]: in float64, as sampling.ts's logSoftmax, the Cast
    // alone took longer than the whole float32 pass (onnxruntime-node 1.30, CPU, [1024, 4096]). Log-probs
    // end within ~1e-6 of float64 (test/engine/logprobs.test.ts); TopK ranks the logits themselves, so
    // the top ids are exactly topK's: float32 rounding of the log-probs could tie two logits that differ.
    const logp = g.op("LogSoftmax", [logits2d], { axis: -1 });
    const at = (ids: string) => g.op("GatherElements", [logp, ids], { axis: 1 });
    g.op("Reshape", [at(g.op("Reshape", [targets, g.ints(-1, 1)])), bs], {}, { outputs: ["target_logprobs"] });
    g.output("target_logprobs", ElemType.FLOAT, ["batch", "seq"]);
    const k = g.input("top_k", ElemType.INT64, [1]);
    const ids = g.opN("TopK", [logits2d, k], { axis: -1, largest: 1, sorted: 1 }, { outputs: 2 })[1]!;
    g.op("Reshape", [at(ids), shapeBS(-1)], {}, { outputs: ["top_logprobs"] });
    g.op("Reshape", [ids, shapeBS(-1)], {}, { outputs: ["top_ids"] });
    g.output("top_logprobs", ElemType.FLOAT, ["batch", "seq", "k"]);
    g.output("top_ids", ElemType.INT64, ["batch", "seq", "k"]);
    g.op("Gather", [logits2d, g.input("last_rows", ElemType.INT64, ["batch"])], { axis: 0 }, { outputs: ["last_logits"] });
    g.output("last_logits", ElemType.FLOAT, ["batch", c.vocabSize]);
  }
  if ((opts.kind === "forward" && opts.nll) || train) {
    const flatTargets = vocabulary ? vocabulary.index(targets) : g.op("Reshape", [targets, g.ints(-1, 1)]);
    const cut = chunked && !("float" in head) ? chunkedNll(final, head, flatTargets) : null;
    const logp = cut ? "" : g.op("LogSoftmax", [logits2d], { axis: -1 });
    const nll = g.op(
      "Reshape",
      [cut ? cut.nll : g.op("Neg", [g.op("GatherElements", [logp, flatTargets], { axis: 1 })]), bs],
      {},
      {
        outputs: ["nll"],
      },
    );
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
      // Everything after this is backward: a dequantized weight it needs is dequantized again (rematerialized).
      const forwardEnd = g.nodes.length;
      const w = g.op("Reshape", [lossWeights, g.ints(-1, 1)]);
      if (cut) seeds.set(final, cut.backward(w));
      // d loss / d logits = w (softmax - onehot(target)), written directly: three passes over the
      // [N, V] logits instead of the six that differentiating LogSoftmax and GatherElements takes.
      else
        seeds.set(
          logits2d,
          g.op("ScatterElements", [g.op("Mul", [g.op("Exp", [logp]), w]), flatTargets, g.op("Neg", [w])], { axis: 1, reduction: "add" }),
        );
      for (const [name, grad] of addGradientsFrom(
        g,
        seeds,
        trainables.map((t) => t.name),
      )) {
        g.op("Identity", [grad], {}, { outputs: [`grad.${name}`] });
        g.output(`grad.${name}`, ElemType.FLOAT, trainables.find((t) => t.name === name)!.shape);
      }
      // Each copy is made just before its first reader, so it lives from there to its last.
      const again = new Map<string, string>();
      for (const n of g.nodes.splice(forwardEnd)) {
        const inputs = n.inputs.map((x) => {
          // The copy waits for the node's other input (the gradient it multiplies).
          if (remat.has(x) && !again.has(x)) again.set(x, remat.get(x)!(n.inputs.find((i) => !remat.has(i))!));
          return again.get(x) ?? x;
        });
        g.nodes.push({ ...n, inputs });
      }
    }
  }
  return g;
}

function bytesOf(a: Float32Array | Int8Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
