// The files of a Llama (or Qwen2) model in Hugging Face layout, ready to write anywhere; biases are written as the config expects them.
import { float32ToBF16, float32ToF16, type FloatDType } from "../protocol/dtypes.ts";
import { writeSafetensors, type TensorInput } from "../protocol/safetensors.ts";
import { ModelError } from "./errors.ts";
import type { BaseTensor } from "./quantize.ts";
import { packWeight } from "./quantized-checkpoint.ts";
import { toHfConfig, type LlamaConfig } from "./config.ts";
import { expectedTensors } from "./llama/names.ts";

export interface HfModelOptions {
  dtype?: FloatDType;
  /** Split the weights over this many shard files with model.safetensors.index.json. */
  shards?: number;
  /** Written as tokenizer_config.json. */
  tokenizerConfig?: Record<string, unknown>;
}

function tensor(dtype: FloatDType, shape: number[], w: Float32Array): TensorInput {
  if (dtype === "F16") return { dtype, shape, data: float32ToF16(w) };
  if (dtype === "BF16") return { dtype, shape, data: float32ToBF16(w) };
  return { dtype, shape, data: w };
}

/**
 * File name -> content. Shapes come from the config, so a weight of the wrong size fails here; quantized
 * matrices are written in the pre-quantized layout config.quantization names (quantized-checkpoint.ts).
 */
export function hfModelFiles(
  config: LlamaConfig,
  weights: ReadonlyMap<string, BaseTensor>,
  tokenizerJson: unknown,
  opts: HfModelOptions = {},
): Map<string, string | Uint8Array> {
  const dtype = opts.dtype ?? "F32";
  const shapes = expectedTensors(config);
  const files = new Map<string, string | Uint8Array>();
  files.set(
    "config.json",
    `${JSON.stringify({ ...toHfConfig(config), torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype] }, null, 2)}\n`,
  );
  files.set("tokenizer.json", JSON.stringify(tokenizerJson));
  if (opts.tokenizerConfig) files.set("tokenizer_config.json", `${JSON.stringify(opts.tokenizerConfig, null, 2)}\n`);
  const names = [...weights.keys()].sort();
  const stored = (n: string): [string, TensorInput][] => {
    const t = weights.get(n)!;
    if (t instanceof Float32Array) return [[n, tensor(dtype, shapes.get(n) ?? [t.length], t)]];
    if (!config.quantization) throw new ModelError("input_invalid", `"${n}" is quantized but the config names no quantization`);
    return packWeight(n, t);
  };
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    files.set("model.safetensors", writeSafetensors(new Map(names.flatMap(stored))));
    return files;
  }
  const weightMap: Record<string, string> = {};
  // Contiguous runs of the sorted names, as transformers shards: a layer's tensors share few files.
  const perShard = Math.ceil(names.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const mine = names.slice(s * perShard, (s + 1) * perShard);
    const entries = mine.flatMap(stored);
    for (const [n] of entries) weightMap[n] = file;
    files.set(file, writeSafetensors(new Map(entries)));
  }
  files.set("model.safetensors.index.json", `${JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2)}\n`);
  return files;
}
