// LoRA adapters in PEFT's file layout (adapter_config.json + adapter_model.safetensors with PEFT's
// key names), so an adapter moves unchanged between fedflare, PEFT and vLLM.
import { firstIssue } from "../../errors.ts";
import * as v from "valibot";
import { toFloat32 } from "../../protocol/dtypes.ts";
import { readSafetensors, SafetensorsError, writeSafetensors, type TensorInput } from "../../protocol/safetensors.ts";
import type { LlamaConfig } from "../config.ts";
import { ModelError } from "../errors.ts";
import type { LoraPair } from "../llama/graph.ts";
import { LINEAR_MODULES, linearName, linearShape, type LinearModule } from "../llama/names.ts";
import type { ModelSource } from "../model-files.ts";

/**
 * A rank_pattern or alpha_pattern key: a module name or a suffix of one at a dot ("q_proj",
 * "layers.0.self_attn.q_proj"), read as a regular expression as PEFT reads it ("^model.layers.1.*q_proj",
 * "layers\.\d\.self_attn"). Without groups or classes and with at most three quantifiers, no key from an
 * adapter file can make matching the short module names slow.
 */
export const PatternKey = v.pipe(
  v.string(),
  v.regex(
    /^[A-Za-z0-9_.^$\\*+?|-]{1,256}$/,
    "a pattern key is a module name, its suffix, or a regular expression without groups, classes or braces",
  ),
  v.check((key) => (key.replace(/\\./g, "").match(/[*+?]/g) ?? []).length <= 3, "a pattern key has at most three quantifiers"),
  v.check((key) => {
    try {
      new RegExp(key);
      return true;
    } catch {
      return false;
    }
  }, "a pattern key is a valid regular expression"),
);

const AdapterConfigSchema = v.looseObject({
  peft_type: v.literal("LORA"),
  task_type: v.optional(v.nullable(v.string())),
  r: v.pipe(v.number(), v.integer(), v.minValue(1)),
  lora_alpha: v.pipe(v.number(), v.gtValue(0)),
  target_modules: v.array(v.picklist(LINEAR_MODULES)),
  lora_dropout: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1)), 0),
  bias: v.optional(v.literal("none"), "none"),
  use_rslora: v.optional(v.boolean(), false),
  use_dora: v.optional(v.literal(false), false),
  fan_in_fan_out: v.optional(v.literal(false), false),
  base_model_name_or_path: v.optional(v.nullable(v.string())),
  layers_to_transform: v.optional(v.nullable(v.pipe(v.array(v.pipe(v.number(), v.integer(), v.minValue(0))), v.minLength(1)))),
  rank_pattern: v.optional(v.record(PatternKey, v.pipe(v.number(), v.integer(), v.minValue(1))), {}),
  alpha_pattern: v.optional(v.record(PatternKey, v.pipe(v.number(), v.gtValue(0))), {}),
});

export interface AdapterConfig {
  r: number;
  alpha: number;
  targetModules: LinearModule[];
  dropout: number;
  useRslora: boolean;
  baseModel: string | null;
  /** PEFT's layers_to_transform: the layers with LoRA (all when null); a split client trains those above its cut. */
  layers?: number[] | null;
  /** PEFT's rank_pattern and alpha_pattern: a rank and an alpha per module, by key (patternKey); none when absent. */
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
}

export interface LoraAdapter {
  config: AdapterConfig;
  /** By linear name (`model.layers.N.self_attn.q_proj`). */
  pairs: Map<string, LoraPair>;
}

/** PEFT's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023). */
export function loraScaling(c: Pick<AdapterConfig, "r" | "alpha" | "useRslora">): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}

/**
 * The first key of a pattern (in its order) that matches the module name `linear` as PEFT's
 * get_pattern_key does: the whole name, or a suffix of it after a dot, the key read as a regular
 * expression (so its '.' matches any character); undefined when none does.
 */
export function patternKey(pattern: Record<string, number>, linear: string): string | undefined {
  return Object.keys(pattern).find((key) => new RegExp(`^(.*\\.)?(${key})$`).test(linear));
}

/** A module's rank, alpha and scaling: the config's, unless its rank_pattern or alpha_pattern names the module. */
export function moduleLora(c: AdapterConfig, linear: string): { r: number; alpha: number; scaling: number } {
  const rKey = patternKey(c.rankPattern ?? {}, linear);
  const alphaKey = patternKey(c.alphaPattern ?? {}, linear);
  const r = rKey === undefined ? c.r : c.rankPattern![rKey]!;
  const alpha = alphaKey === undefined ? c.alpha : c.alphaPattern![alphaKey]!;
  return { r, alpha, scaling: loraScaling({ r, alpha, useRslora: c.useRslora }) };
}

export function parseAdapterConfig(json: unknown): AdapterConfig {
  const parsed = v.safeParse(AdapterConfigSchema, json);
  if (!parsed.success) throw new ModelError("adapter_invalid", firstIssue(parsed.issues, "adapter_config.json"));
  const c = parsed.output;
  return {
    r: c.r,
    alpha: c.lora_alpha,
    targetModules: [...new Set(c.target_modules)],
    dropout: c.lora_dropout,
    useRslora: c.use_rslora,
    baseModel: c.base_model_name_or_path ?? null,
    layers: c.layers_to_transform ?? null,
    ...(Object.keys(c.rank_pattern).length ? { rankPattern: c.rank_pattern } : {}),
    ...(Object.keys(c.alpha_pattern).length ? { alphaPattern: c.alpha_pattern } : {}),
  };
}

const PEFT_PREFIX = "base_model.model.";
const peftKey = (linear: string, which: "A" | "B") => `${PEFT_PREFIX}${linear}.lora_${which}.weight`;

/** PEFT key ("base_model.model.<linear>.lora_A.weight") to training-graph input ("<linear>.lora_A.weight"). */
export const graphName = (key: string) => (key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key);

/** LoRA pairs by linear name from tensors named `<linear>.lora_A.weight` / `.lora_B.weight` (graph input names or PEFT keys). */
export function loraPairs(tensors: ReadonlyMap<string, Float32Array>, r: number, scaling: number): Map<string, LoraPair> {
  const pairs = new Map<string, LoraPair>();
  for (const [key, a] of tensors)
    if (key.endsWith(".lora_A.weight"))
      pairs.set(graphName(key).slice(0, -".lora_A.weight".length), {
        a,
        b: tensors.get(key.replace(/lora_A\.weight$/, "lora_B.weight"))!,
        r,
        scaling,
      });
  return pairs;
}

/** LoRA pairs (loraPairs' names) each at its module's rank and scaling under the config's patterns (moduleLora). */
export function adapterPairs(tensors: ReadonlyMap<string, Float32Array>, c: AdapterConfig): Map<string, LoraPair> {
  const pairs = loraPairs(tensors, c.r, loraScaling(c));
  for (const [name, p] of pairs) {
    const { r, scaling } = moduleLora(c, name);
    pairs.set(name, { ...p, r, scaling });
  }
  return pairs;
}

/** Reads an adapter folder and checks every tensor against the base model's config. */
export async function loadPeftAdapter(source: ModelSource, model: LlamaConfig): Promise<LoraAdapter> {
  const cfgBytes = await source.read("adapter_config.json");
  if (!cfgBytes) throw new ModelError("file_missing", `${source.location}: adapter_config.json is missing`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(cfgBytes));
  } catch (e) {
    throw new ModelError("adapter_invalid", `${source.location}/adapter_config.json is not valid JSON: ${(e as Error).message}`);
  }
  const config = parseAdapterConfig(json);
  const bytes = await source.read("adapter_model.safetensors");
  if (!bytes) throw new ModelError("file_missing", `${source.location}: adapter_model.safetensors is missing`);
  let tensors: ReturnType<typeof readSafetensors>["tensors"];
  try {
    tensors = readSafetensors(bytes).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError)
      throw new ModelError("adapter_invalid", `${source.location}/adapter_model.safetensors: ${e.message}`);
    throw e;
  }
  const pairs = new Map<string, LoraPair>();
  const used = new Set<string>();
  const take = (key: string, shape: [number, number], r: number): Float32Array => {
    const t = tensors.get(key);
    if (!t) throw new ModelError("tensor_missing", `${source.location}: adapter tensor "${key}" is missing`);
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16")
      throw new ModelError("tensor_dtype", `${source.location}: adapter tensor "${key}" is ${t.dtype}, not a float type`);
    if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1])
      throw new ModelError(
        "tensor_shape",
        `${source.location}: adapter tensor "${key}" has shape ${JSON.stringify(t.shape)}; r=${r} on this base needs ` +
          `${JSON.stringify(shape)}`,
      );
    used.add(key);
    return toFloat32(t.dtype, t.data);
  };
  const layers = config.layers ?? Array.from({ length: model.numLayers }, (_, l) => l);
  for (const l of layers)
    if (l >= model.numLayers)
      throw new ModelError("adapter_invalid", `adapter_config.json: layers_to_transform names layer ${l}; the base has ${model.numLayers}`);
  for (const l of layers)
    for (const m of config.targetModules) {
      const name = linearName(l, m);
      const [out, inp] = linearShape(model, m);
      const { r, scaling } = moduleLora(config, name);
      pairs.set(name, { a: take(peftKey(name, "A"), [r, inp], r), b: take(peftKey(name, "B"), [out, r], r), r, scaling });
    }
  for (const key of tensors.keys())
    if (!used.has(key))
      throw new ModelError(
        "tensor_unexpected",
        `${source.location}: adapter tensor "${key}" does not belong to target_modules ${JSON.stringify(config.targetModules)} of a ` +
          `${model.numLayers}-layer base`,
      );
  return { config, pairs };
}

/** adapter_config.json and adapter_model.safetensors for an adapter, as PEFT writes them. */
export function writePeftAdapter(adapter: LoraAdapter): { "adapter_config.json": string; "adapter_model.safetensors": Uint8Array } {
  const c = adapter.config;
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: c.baseModel,
    r: c.r,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    target_modules: [...c.targetModules].sort(),
    bias: "none",
    use_rslora: c.useRslora,
    use_dora: false,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: c.layers ?? null,
    rank_pattern: c.rankPattern ?? {},
    alpha_pattern: c.alphaPattern ?? {},
  };
  const tensors: Record<string, TensorInput> = {};
  for (const [name, p] of adapter.pairs) {
    tensors[peftKey(name, "A")] = { dtype: "F32", shape: [p.r, p.a.length / p.r], data: p.a };
    tensors[peftKey(name, "B")] = { dtype: "F32", shape: [p.b.length / p.r, p.r], data: p.b };
  }
  return { "adapter_config.json": `${JSON.stringify(config, null, 2)}\n`, "adapter_model.safetensors": writeSafetensors(tensors) };
}
