// A Llama-family model in Hugging Face layout: config.json, model.safetensors (or shards named by
// model.safetensors.index.json), tokenizer.json and tokenizer_config.json. Files come through a
// ModelSource, so the same code loads from disk, R2, KV or a bundled asset.
import * as v from "valibot";
import { toFloat32 } from "../protocol/dtypes.ts";
import { readSafetensors, SafetensorsError, type TensorEntry } from "../protocol/safetensors.ts";
import { parseLlamaConfig, type LlamaConfig } from "./config.ts";
import { ModelError } from "./errors.ts";
import { LM_HEAD, expectedTensors } from "./llama/names.ts";
import { loadTokenizer, type TextTokenizer } from "./tokenizer/load.ts";

export interface ModelSource {
  /** A file's bytes by name relative to the model folder, or null when it does not exist. */
  read(name: string): Promise<Uint8Array | null>;
  /** Where the files are, for messages. */
  readonly location: string;
}

export interface LoadedModel {
  config: LlamaConfig;
  weights: Map<string, Float32Array>;
  tokenizer: TextTokenizer;
}

// Buffers some checkpoints carry that transformers recomputes and ignores.
const IGNORED = /\.rotary_emb\.inv_freq$/;

const ShardIndex = v.object({
  metadata: v.optional(v.record(v.string(), v.unknown())),
  weight_map: v.record(
    v.string(),
    v.pipe(v.string(), v.regex(/^[^/\\]+\.safetensors$/, "must name a .safetensors file in the model folder")),
  ),
});

async function readJson(source: ModelSource, name: string, required: true): Promise<unknown>;
async function readJson(source: ModelSource, name: string, required: false): Promise<unknown | null>;
async function readJson(source: ModelSource, name: string, required: boolean): Promise<unknown | null> {
  const bytes = await source.read(name);
  if (!bytes) {
    if (required) throw new ModelError("file_missing", `${source.location}: ${name} is missing`);
    return null;
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ModelError(
      name === "config.json" ? "config_invalid" : name.startsWith("tokenizer") ? "tokenizer_invalid" : "weights_invalid",
      `${source.location}/${name} is not valid JSON: ${(e as Error).message}`,
    );
  }
}

export async function loadConfig(source: ModelSource): Promise<LlamaConfig> {
  return parseLlamaConfig(await readJson(source, "config.json", true));
}

export async function loadModelTokenizer(source: ModelSource): Promise<TextTokenizer> {
  return loadTokenizer(await readJson(source, "tokenizer.json", true), (await readJson(source, "tokenizer_config.json", false)) ?? {});
}

async function readShard(source: ModelSource, file: string): Promise<Map<string, TensorEntry>> {
  const bytes = await source.read(file);
  if (!bytes) throw new ModelError("file_missing", `${source.location}: ${file} is missing`);
  try {
    return readSafetensors(bytes).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError) throw new ModelError("weights_invalid", `${source.location}/${file}: ${e.message}`);
    throw e;
  }
}

/**
 * The raw tensors of the checkpoint by name, from the single file or from its shards: every tensor, or
 * (`wanted`) those of the shards that hold a wanted tensor, so a partial load reads no other shard.
 */
async function readCheckpoint(source: ModelSource, wanted?: ReadonlySet<string>): Promise<Map<string, TensorEntry>> {
  const indexJson = await readJson(source, "model.safetensors.index.json", false);
  if (indexJson === null) return readShard(source, "model.safetensors");
  const index = v.safeParse(ShardIndex, indexJson);
  if (!index.success)
    throw new ModelError(
      "weights_invalid",
      `${source.location}/model.safetensors.index.json: field "${v.getDotPath(index.issues[0]) ?? "(root)"}": ${index.issues[0].message}`,
    );
  const map = Object.entries(index.output.weight_map).filter(([name]) => !wanted || wanted.has(name));
  const all = new Map<string, TensorEntry>();
  for (const file of [...new Set(map.map(([, file]) => file))].sort()) {
    for (const [name, t] of await readShard(source, file)) {
      if (index.output.weight_map[name] !== file)
        throw new ModelError(
          "weights_invalid",
          `${source.location}/${file} holds "${name}", which the index places in ${index.output.weight_map[name] ?? "no file"}`,
        );
      all.set(name, t);
    }
  }
  for (const [name, file] of map)
    if (!all.has(name))
      throw new ModelError("tensor_missing", `${source.location}: the index places "${name}" in ${file}, which does not contain it`);
  return all;
}

export interface LoadOptions {
  /**
   * Load only these decoder layers (original indices) besides the embedding, final norm and head: a
   * split client's layers above its cut, or an offsite-tuning emulator's. Tensors of other layers may
   * be present (a full checkpoint) or absent (an emulator's); present ones are checked, never decoded.
   */
  layers?: readonly number[];
}

/** The checkpoint's tensors as float32, each checked by name, dtype and shape against the config. */
export async function loadWeights(source: ModelSource, config: LlamaConfig, opts: LoadOptions = {}): Promise<Map<string, Float32Array>> {
  for (const l of opts.layers ?? [])
    if (!Number.isInteger(l) || l < 0 || l >= config.numLayers)
      throw new ModelError("input_invalid", `layer ${l} does not exist: the model has ${config.numLayers} layers`);
  const all = expectedTensors(config);
  const needed = expectedTensors(config, opts.layers);
  const raw = await readCheckpoint(source, opts.layers ? new Set(needed.keys()) : undefined);
  for (const [name, t] of raw) {
    const shape = all.get(name);
    if (!shape) {
      if (IGNORED.test(name)) continue;
      // A tied checkpoint may still carry lm_head.weight; transformers ties it to the embedding.
      if (name === LM_HEAD && config.tieWordEmbeddings) continue;
      throw new ModelError(
        "tensor_unexpected",
        `${source.location}: tensor "${name}" is not part of a Llama model with this config.json (${config.numLayers} layers)`,
      );
    }
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16")
      throw new ModelError("tensor_dtype", `${source.location}: tensor "${name}" is ${t.dtype}; weights must be F32, F16 or BF16`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new ModelError(
        "tensor_shape",
        `${source.location}: tensor "${name}" has shape ${JSON.stringify(t.shape)} but config.json implies ${JSON.stringify(shape)}`,
      );
  }
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of needed) {
    const t = raw.get(name);
    if (!t)
      throw new ModelError(
        "tensor_missing",
        `${source.location}: tensor "${name}" ${JSON.stringify(shape)} is missing from the checkpoint`,
      );
    weights.set(name, toFloat32(t.dtype as "F32" | "F16" | "BF16", t.data));
  }
  return weights;
}

export async function loadModel(source: ModelSource, opts: LoadOptions = {}): Promise<LoadedModel> {
  const config = await loadConfig(source);
  return { config, weights: await loadWeights(source, config, opts), tokenizer: await loadModelTokenizer(source) };
}
