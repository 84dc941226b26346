// A Hugging Face `config.json` of the Llama family (LlamaConfig in transformers) or of Qwen2 (Qwen2Config:
// the same decoder with biases on q/k/v_proj), validated and with transformers' defaults filled in.
import { firstIssue } from "../errors.ts";
import * as v from "valibot";
import { ModelError } from "./errors.ts";
import type { LinearModule } from "./llama/names.ts";
import { parseQuantizationConfig, quantizationConfig, type StoredQuant } from "./quantized-checkpoint.ts";

const positiveInt = v.pipe(v.number(), v.integer(), v.minValue(1));
const tokenId = v.pipe(v.number(), v.integer(), v.minValue(0));

const ROPE_TYPES = ["default", "linear", "llama3"];
const RopeScaling = v.variant("rope_type", [
  v.looseObject({ rope_type: v.literal("default") }),
  v.looseObject({ rope_type: v.literal("linear"), factor: v.pipe(v.number(), v.minValue(1)) }),
  v.looseObject({
    rope_type: v.literal("llama3"),
    factor: v.pipe(v.number(), v.minValue(1)),
    low_freq_factor: v.pipe(v.number(), v.gtValue(0)),
    high_freq_factor: v.pipe(v.number(), v.gtValue(0)),
    original_max_position_embeddings: positiveInt,
  }),
]);
export type RopeScaling =
  | { rope_type: "linear"; factor: number }
  | { rope_type: "llama3"; factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };

const RawLlamaConfig = v.looseObject({
  model_type: v.string(),
  architectures: v.optional(v.array(v.string())),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: v.optional(v.nullable(positiveInt)),
  head_dim: v.optional(v.nullable(positiveInt)),
  vocab_size: positiveInt,
  max_position_embeddings: v.optional(positiveInt),
  rms_norm_eps: v.optional(v.pipe(v.number(), v.gtValue(0)), 1e-6),
  rope_theta: v.optional(v.pipe(v.number(), v.gtValue(0)), 10000),
  rope_scaling: v.optional(v.nullable(RopeScaling)),
  tie_word_embeddings: v.optional(v.boolean(), false),
  hidden_act: v.optional(v.string(), "silu"),
  attention_bias: v.optional(v.boolean(), false),
  mlp_bias: v.optional(v.boolean(), false),
  use_sliding_window: v.optional(v.boolean(), false),
  bos_token_id: v.optional(v.nullable(tokenId)),
  eos_token_id: v.optional(v.nullable(v.union([tokenId, v.array(tokenId)]))),
  pad_token_id: v.optional(v.nullable(tokenId)),
  torch_dtype: v.optional(v.nullable(v.string())),
  quantization_config: v.optional(v.unknown()),
});

export interface LlamaConfig {
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** The linears that add a bias, as transformers builds them: Qwen2Attention's q/k/v_proj; LlamaAttention's four with attention_bias. */
  linearBiases: readonly LinearModule[];
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** Set when the checkpoint stores its matrices pre-quantized (config.json's quantization_config). */
  quantization?: StoredQuant;
}

// model_type -> the architecture toHfConfig writes and transformers' default max_position_embeddings.
const MODEL_TYPES: Record<string, { architecture: string; maxPositions: number }> = {
  llama: { architecture: "LlamaForCausalLM", maxPositions: 2048 },
  qwen2: { architecture: "Qwen2ForCausalLM", maxPositions: 32768 },
};
const QKV: readonly LinearModule[] = ["q_proj", "k_proj", "v_proj"];

/** Validates a parsed `config.json`; throws ModelError naming the offending field. */
export function parseLlamaConfig(json: unknown): LlamaConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ModelError("config_invalid", 'config.json: field "(root)": expected a JSON object');
  const parsed = v.safeParse(RawLlamaConfig, withRopeType(json as Record<string, unknown>));
  if (!parsed.success) throw new ModelError("config_invalid", firstIssue(parsed.issues, "config.json"));
  const c = parsed.output;
  const modelType = Object.hasOwn(MODEL_TYPES, c.model_type) ? MODEL_TYPES[c.model_type]! : null;
  if (!modelType)
    throw new ModelError(
      "config_unsupported",
      `config.json: model_type "${c.model_type}" is not supported; fedflare runs the Llama family (model_type "llama" or "qwen2")`,
    );
  if (c.hidden_act !== "silu")
    throw new ModelError("config_unsupported", `config.json: hidden_act "${c.hidden_act}" is not supported; Llama uses "silu"`);
  if (c.mlp_bias) throw new ModelError("config_unsupported", "config.json: mlp_bias is not supported (biases on gate/up/down_proj)");
  // Qwen2Attention uses sliding-window attention on layers from max_window_layers up only when this is set.
  if (c.model_type === "qwen2" && c.use_sliding_window)
    throw new ModelError(
      "config_unsupported",
      "config.json: use_sliding_window is not supported; fedflare attends over the whole sequence",
    );
  // Qwen2Attention hardcodes bias=True on q/k/v_proj and False on o_proj, whatever attention_bias says;
  // LlamaAttention puts config.attention_bias on all four.
  const linearBiases = c.model_type === "qwen2" ? QKV : c.attention_bias ? [...QKV, "o_proj" as const] : [];
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0)
    throw new ModelError(
      "config_invalid",
      `config.json: num_attention_heads (${c.num_attention_heads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim))
    throw new ModelError(
      "config_invalid",
      `config.json: hidden_size (${c.hidden_size}) is not divisible by num_attention_heads (${c.num_attention_heads}) ` +
        `and no head_dim is given`,
    );
  if (headDim % 2 !== 0) throw new ModelError("config_invalid", `config.json: head_dim ${headDim} must be even for rotary embeddings`);
  for (const [name, id] of [
    ["bos_token_id", c.bos_token_id],
    ["pad_token_id", c.pad_token_id],
  ] as const)
    if (id != null && id >= c.vocab_size)
      throw new ModelError("config_invalid", `config.json: ${name} ${id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
  const eos = c.eos_token_id == null ? [] : Array.isArray(c.eos_token_id) ? c.eos_token_id : [c.eos_token_id];
  for (const id of eos)
    if (id >= c.vocab_size)
      throw new ModelError("config_invalid", `config.json: eos_token_id ${id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
  return {
    modelType: c.model_type,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim,
    vocabSize: c.vocab_size,
    maxPositions: c.max_position_embeddings ?? modelType.maxPositions,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta,
    ropeScaling: ropeScaling(c.rope_scaling),
    tieWordEmbeddings: c.tie_word_embeddings,
    linearBiases,
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eos,
    padTokenId: c.pad_token_id ?? null,
    ...(c.quantization_config === undefined ? {} : { quantization: parseQuantizationConfig(c.quantization_config) }),
  };
}

/**
 * The config with rope_scaling's legacy `type` read as `rope_type`, as transformers' rope_config_validation
 * does; a type fedflare does not implement (dynamic, yarn, longrope, ...) is refused by name.
 */
function withRopeType(json: Record<string, unknown>): Record<string, unknown> {
  const raw = json.rope_scaling;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return json;
  const scaling = raw as Record<string, unknown>;
  const type = scaling.rope_type ?? scaling.type;
  if (typeof type === "string" && !ROPE_TYPES.includes(type))
    throw new ModelError(
      "config_invalid",
      `config.json: field "rope_scaling.rope_type": rope scaling "${type}" is not supported; fedflare implements ` +
        `${ROPE_TYPES.map((t) => `"${t}"`).join(", ")}`,
    );
  return { ...json, rope_scaling: { ...scaling, rope_type: type } };
}

function ropeScaling(raw: v.InferOutput<typeof RopeScaling> | null | undefined): RopeScaling | null {
  if (!raw || raw.rope_type === "default") return null;
  if (raw.rope_type === "linear") return { rope_type: "linear", factor: raw.factor as number };
  const { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } = raw as Extract<
    RopeScaling,
    { rope_type: "llama3" }
  >;
  return { rope_type: "llama3", factor, low_freq_factor, high_freq_factor, original_max_position_embeddings };
}

/** The HF-layout `config.json` for a config (used to write models). */
export function toHfConfig(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: [MODEL_TYPES[c.modelType]!.architecture],
    model_type: c.modelType,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling,
    tie_word_embeddings: c.tieWordEmbeddings,
    hidden_act: "silu",
    // Qwen2Config has neither field: its q/k/v biases are implied by model_type.
    ...(c.modelType === "llama" ? { attention_bias: c.linearBiases.length > 0, mlp_bias: false } : {}),
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    pad_token_id: c.padTokenId,
    torch_dtype: "float32",
    ...(c.quantization ? { quantization_config: quantizationConfig(c.quantization) } : {}),
  };
}

/**
 * Dimensions a federation's model may have: above every Llama-family checkpoint a Worker could hold
 * (Llama-3.1-405B has hidden 16,384, 126 layers, vocabulary 128,256), and low enough that shapes computed
 * from them never overflow or ask for terabytes.
 */
export const MODEL_BOUNDS = {
  hiddenSize: ["hidden_size", 16_384],
  intermediateSize: ["intermediate_size", 65_536],
  numLayers: ["num_hidden_layers", 256],
  numHeads: ["num_attention_heads", 256],
  headDim: ["head_dim", 1024],
  vocabSize: ["vocab_size", 1 << 20],
  maxPositions: ["max_position_embeddings", 1 << 20],
} as const;

/** Throws ModelError naming the first dimension over MODEL_BOUNDS, by its config.json name. */
export function assertModelBounds(c: LlamaConfig): void {
  for (const [field, [name, max]] of Object.entries(MODEL_BOUNDS) as [
    keyof typeof MODEL_BOUNDS,
    (typeof MODEL_BOUNDS)[keyof typeof MODEL_BOUNDS],
  ][])
    if (c[field] > max)
      throw new ModelError("config_invalid", `config.json: ${name} ${c[field]} is over the ${max} a federation's model may have`);
}
