// What a client holds and needs for one training or scoring step on ORT-web, predicted from the model's
// shape: the bytes of the tensors it holds (as a pre-quantized checkpoint stores them), the bytes it reads
// for them, its isolate's peak (JS heap and buffers plus onnxruntime's WASM heap, what a Worker's 128 MB
// limit counts) and the step's FLOPs. The activation term is fitted to measurements of onnxruntime-web's
// heap (bench/client-memory-model.ts, bench/results/client-memory-model.json), and test/engine/client-plan.test.ts
// checks a prediction against a fresh measurement.
import type { LlamaConfig } from "./config.ts";
import { EMBED, expectedTensors, LINEAR_MODULES, linearShape } from "./llama/names.ts";
import type { QuantMode } from "./quantize.ts";
import { storedBits } from "./quantized-checkpoint.ts";

export const MIB = 2 ** 20;
/** A Worker's memory limit: 128 MB, read as MiB. */
export const WORKER_MEMORY_BYTES = 128 * MIB;

/** What one client step runs. */
export interface Footprint {
  /** The decoder layers it runs (original indices). */
  layers: readonly number[];
  /** Whether it looks token ids up in the embedding (a split graph starts from hidden states instead). */
  embeds: boolean;
  /** Whether it runs a backward pass (training) or forward passes only. */
  trains: boolean;
  /** Whether it trains whole tensors in float (offsite-tuning's adapter layers) rather than LoRA. */
  full?: boolean;
}

export interface StepSettings {
  /** How the base is stored: float32, or pre-quantized (a client quantizing a float base holds its float copy while it does). */
  quant: QuantMode;
  /** Rows and tokens per row of one step. */
  batch: number;
  seq: number;
}

export interface StepPlan {
  /** Bytes of the tensors the client holds, as stored. */
  heldBytes: number;
  /** Bytes it reads for them (their stored bytes and the checkpoint's header, roughly a KiB a tensor). */
  readBytes: number;
  /** onnxruntime-web's WASM heap at its peak: its own start, the weights, the step's activations. */
  wasmBytes: number;
  /** The isolate's peak: its JS besides the weights, the weights as read into JS, and the WASM heap at its peak. */
  peakBytes: number;
  /** What the peak cannot be below, with no fit: the weights in JS and copied into the heap at once. */
  floorBytes: number;
  fits: boolean;
  /**
   * Whether the prediction is inside what the fit measured: a LoRA training step on a quantized base, its
   * layers x tokens no larger than the fit's largest (FIT_MAX_LAYER_TOKEN_BYTES). Elsewhere (forward-only
   * steps, float bases, whole tensors trained, more layers or tokens) the same terms are extrapolated.
   */
  fitted: boolean;
  /** Multiply-adds x 2 of one step. */
  flops: number;
}

/** onnxruntime-web's WASM heap once started, before any model (measured: bench/lib/wasm-heap-probe.ts). */
export const WASM_START_BYTES = 16 * MIB;
/**
 * A client isolate's JS heap and buffers during a task besides the weights: its partition, LoRA tensors,
 * trunk states, the upload (measured in workerd: bench/results/smollm-federation.json, the JS peak less the
 * weights held, 13.2 and 15.2 MiB; 5.8 MiB idle).
 */
export const JS_TASK_BYTES = 15 * MIB;

/**
 * The fit's largest layers x tokens x (hidden + intermediate) x 4 bytes (bench/results/client-memory-model.json:
 * TinyLlama's shape, 2 layers, 128 tokens); past it the activation term is extrapolated.
 */
export const FIT_MAX_LAYER_TOKEN_BYTES = 7_864_320;

/**
 * The activation term of the WASM heap, fitted (bench/client-memory-model.ts): a fixed part; a part per
 * layer in proportion to its float32 weights (each weight dequantized just before use, and again in the
 * backward pass); a part per layer and token in proportion to hidden + intermediate size (activations
 * kept for the backward pass). Attention's [positions x positions] term did not improve the fit at up to
 * 128 tokens and is left out. The fit is within 18% of each measured heap (onnxruntime-web grows its
 * heap in steps of about a fifth, which bounds how close any fit can come).
 */
export const ACTIVATION_FIT = { fixed: 16_873_287, perLayerFloat: 0.4786, perLayerToken: 8.485 };

/** Stored bytes of a matrix under `quant` (float32; int8 per row; int4 in blocks of 32 with a float scale each). */
function matrixBytes(name: string, rows: number, cols: number, quant: QuantMode): number {
  if (quant === "f32") return rows * cols * 4;
  return storedBits(name, quant) === 8 ? rows * cols + rows * 4 : (rows * cols) / 2 + (rows * cols * 4) / 32;
}

/** The tensors a step holds, by name, with their stored bytes. */
export function heldTensors(c: LlamaConfig, f: Footprint, quant: QuantMode): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, shape] of expectedTensors(c, f.layers)) {
    // The table is held to embed, or as a tied head; an untied head is its own matrix.
    if (name === EMBED && !f.embeds && !c.tieWordEmbeddings) continue;
    out.set(name, shape.length === 2 ? matrixBytes(name, shape[0]!, shape[1]!, quant) : shape[0]! * 4);
  }
  return out;
}

/** Float32 bytes of one decoder layer's linears. */
function layerFloatBytes(c: LlamaConfig): number {
  return LINEAR_MODULES.reduce((s, m) => {
    const [o, i] = linearShape(c, m);
    return s + o * i * 4;
  }, 0);
}

/** The features the fit weighs, in ACTIVATION_FIT's order (also bench/client-memory-model.ts's). */
export function activationFeatures(c: LlamaConfig, layers: number, s: StepSettings): [number, number, number] {
  return [1, layers * layerFloatBytes(c), layers * s.batch * s.seq * (c.hiddenSize + c.intermediateSize) * 4];
}

/**
 * 2 x multiply-adds of a step on these layers and the head: a backward pass about doubles the forward's,
 * and the head's recomputed logits add one more.
 */
export function stepFlops(c: LlamaConfig, f: Footprint, s: StepSettings): number {
  const tokens = s.batch * s.seq;
  const layer = layerFloatBytes(c) / 4 + 2 * s.seq * c.numHeads * c.headDim;
  const head = c.vocabSize * c.hiddenSize;
  const forward = 2 * tokens * (f.layers.length * layer + head);
  return f.trains ? 2 * forward + 2 * tokens * head : forward;
}

export function planStep(c: LlamaConfig, f: Footprint, s: StepSettings): StepPlan {
  const held = heldTensors(c, f, s.quant);
  const heldBytes = [...held.values()].reduce((a, b) => a + b, 0);
  const [one, layerFloat, layerToken] = activationFeatures(c, f.layers.length, s);
  const fit = ACTIVATION_FIT;
  const activation = fit.fixed * one + fit.perLayerFloat * layerFloat + fit.perLayerToken * layerToken;
  const wasmBytes = WASM_START_BYTES + heldBytes + activation;
  // The weights read into JS are copied into the heap and dropped, but the garbage collector need not free
  // them before the first steps: counted beside the heap's peak (measured so: bench/results/smollm-federation.json).
  const peakBytes = JS_TASK_BYTES + heldBytes + wasmBytes;
  return {
    heldBytes,
    readBytes: heldBytes + held.size * 1024,
    wasmBytes,
    peakBytes,
    fits: peakBytes <= WORKER_MEMORY_BYTES,
    floorBytes: WASM_START_BYTES + 2 * heldBytes,
    fitted: f.trains && !f.full && s.quant !== "f32" && layerToken <= FIT_MAX_LAYER_TOKEN_BYTES,
    flops: stepFlops(c, f, s),
  };
}

/**
 * Why no client could run these footprints inside limitBytes, a Worker's by default (each placement's
 * predicted peak against the limit, and what to change), or null when one placement fits, the model runs
 * elsewhere, or a placement could fit: its weights alone are under the limit and its prediction is under it
 * or outside the fit (StepPlan.fitted).
 */
export function clientPlanRefusal(
  c: LlamaConfig,
  footprints: Readonly<Partial<Record<string, Footprint>>>,
  s: StepSettings,
  limitBytes = WORKER_MEMORY_BYTES,
): string | null {
  // Refused only where no placement can fit for sure: its weights alone are over the limit, or the fit
  // stands behind a prediction over it; an extrapolated prediction refuses nothing.
  const plans = Object.entries(footprints).map(([placement, f]) => ({ placement, f: f!, plan: planStep(c, f!, s) }));
  const over = (p: StepPlan) => p.floorBytes > limitBytes || (p.fitted && p.peakBytes > limitBytes);
  if (plans.length === 0 || !plans.every((p) => over(p.plan))) return null;
  const mib = (b: number) => `${(b / MIB).toFixed(0)} MiB`;
  const each = plans.map(
    (p) => `${p.placement}: ${p.f.layers.length} layers, ${mib(p.plan.heldBytes)} of weights, a predicted peak of ${mib(p.plan.peakBytes)}`,
  );
  return (
    `no client can run this federation inside its ${mib(limitBytes)} (clientMemoryMiB; ${each.join("; ")}, at batch ${s.batch} x ` +
    `${s.seq} tokens): offload more layers to the endpoint (a higher method.fromLayer), store the base as int4, or lower ` +
    `local.batchSize or local.maxTokens (for clients that are not Workers, raise clientMemoryMiB); ` +
    "`fedflare plan` shows what each cut needs"
  );
}
