// A Llama-family model in Hugging Face layout: config.json, model.safetensors (or shards named by
// model.safetensors.index.json), tokenizer.json and tokenizer_config.json. Files come through a
// ModelSource, so the same code loads from disk, R2, KV or a bundled asset.
import { firstIssue } from "../errors.ts";
import * as v from "valibot";
import { toFloat32 } from "../protocol/dtypes.ts";
import { readSafetensors, readSafetensorsHeader, SafetensorsError } from "../protocol/safetensors.ts";
import { parseLlamaConfig, type LlamaConfig } from "./config.ts";
import { ModelError } from "./errors.ts";
import { EMBED, LM_HEAD, expectedTensors } from "./llama/names.ts";
import { checkPacked, packedNames, unpackWeight, type StoredTensor } from "./quantized-checkpoint.ts";
import type { BaseTensor } from "./quantize.ts";
import { loadTokenizer, type TextTokenizer } from "./tokenizer/load.ts";

export interface ModelSource {
  /** A file's bytes by name relative to the model folder, or null when it does not exist. */
  read(name: string): Promise<Uint8Array | null>;
  /**
   * Bytes [offset, offset + length) of a file with the file's whole size, or null when it does not
   * exist. A source that can (an R2 range read, a file on disk) gives it, so a load reads each
   * checkpoint's header and then only the tensors it keeps, one at a time, never the whole file.
   */
  readRange?(name: string, offset: number, length: number): Promise<{ bytes: Uint8Array; size: number } | null>;
  /** Where the files are, for messages. */
  readonly location: string;
}

export interface LoadedModel {
  config: LlamaConfig;
  /** Matrices of a pre-quantized checkpoint stay in their stored form (config.quantization). */
  weights: Map<string, BaseTensor>;
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

/** The largest checkpoint header read by range (the parser's own cap is larger; a model's header is kilobytes). */
const HEADER_CAP = 16 * 2 ** 20;

const invalid = (source: ModelSource, file: string, e: unknown): never => {
  if (e instanceof SafetensorsError) throw new ModelError("weights_invalid", `${source.location}/${file}: ${e.message}`);
  throw e;
};

/** A shard's tensors: by range reads where the source has them (the header, then each tensor on demand), else the whole file. */
async function readShard(source: ModelSource, file: string): Promise<Map<string, StoredTensor>> {
  const missing = () => new ModelError("file_missing", `${source.location}: ${file} is missing`);
  if (!source.readRange) {
    const bytes = await source.read(file);
    if (!bytes) throw missing();
    let tensors: ReturnType<typeof readSafetensors>["tensors"];
    try {
      tensors = readSafetensors(bytes).tensors;
    } catch (e) {
      return invalid(source, file, e);
    }
    return new Map([...tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, bytes: async () => t.data, owned: false }]));
  }
  const range = source.readRange.bind(source);
  const first = await range(file, 0, 8);
  if (!first) throw missing();
  let header: ReturnType<typeof readSafetensorsHeader>;
  try {
    // A length that is short, over the parser's cap or past the file is refused by the parser from these 8 bytes.
    const n = first.bytes.byteLength < 8 ? 0 : Number(new DataView(first.bytes.buffer, first.bytes.byteOffset, 8).getBigUint64(0, true));
    const whole = first.bytes.byteLength === 8 && n <= HEADER_CAP && 8 + n <= first.size;
    header = readSafetensorsHeader(whole ? (await range(file, 0, 8 + n))!.bytes : first.bytes);
  } catch (e) {
    return invalid(source, file, e);
  }
  const available = first.size - header.dataStart;
  const why = header.dataBytes > available ? "out_of_bounds" : "trailing_bytes";
  if (header.dataBytes !== available)
    throw new ModelError(
      "weights_invalid",
      `${source.location}/${file}: the data buffer is ${available} bytes but its tensors end at ${header.dataBytes} (${why})`,
    );
  return new Map(
    [...header.tensors].map(([name, t]) => [
      name,
      {
        dtype: t.dtype,
        shape: t.shape,
        owned: true,
        bytes: async () => {
          const [begin, end] = t.dataOffsets;
          const got = await range(file, header.dataStart + begin, end - begin);
          if (!got || got.bytes.byteLength !== end - begin)
            throw new ModelError("weights_invalid", `${source.location}/${file}: tensor "${name}" could not be read whole`);
          return got.bytes;
        },
      },
    ]),
  );
}

/**
 * The raw tensors of the checkpoint by name, from the single file or from its shards: every tensor, or
 * (`wanted`) those of the shards that hold a wanted tensor, so a partial load reads no other shard.
 */
async function readCheckpoint(source: ModelSource, wanted?: ReadonlySet<string>): Promise<Map<string, StoredTensor>> {
  const indexJson = await readJson(source, "model.safetensors.index.json", false);
  if (indexJson === null) return readShard(source, "model.safetensors");
  const index = v.safeParse(ShardIndex, indexJson);
  if (!index.success) throw new ModelError("weights_invalid", firstIssue(index.issues, `${source.location}/model.safetensors.index.json`));
  const map = Object.entries(index.output.weight_map).filter(([name]) => !wanted || wanted.has(name));
  const all = new Map<string, StoredTensor>();
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
  /**
   * False: not the embedding table, unless the head is tied to it (a split client's graph starts from
   * hidden states, so with an untied head it never reads the table).
   */
  embedding?: boolean;
}

/**
 * The checkpoint, every header checked by name, dtype and shape against the config, as the tensors it
 * holds (of `layers` where given), each read when asked for: float32, or, in a pre-quantized checkpoint,
 * a matrix as stored (never decoded to float32). A caller that handles one tensor at a time (quantizing a
 * checkpoint) holds one tensor at a time.
 */
export async function openWeights(
  source: ModelSource,
  config: LlamaConfig,
  opts: LoadOptions = {},
): Promise<{ shapes: Map<string, number[]>; read(name: string): Promise<BaseTensor> }> {
  for (const l of opts.layers ?? [])
    if (!Number.isInteger(l) || l < 0 || l >= config.numLayers)
      throw new ModelError("input_invalid", `layer ${l} does not exist: the model has ${config.numLayers} layers`);
  const all = expectedTensors(config);
  const needed = expectedTensors(config, opts.layers);
  if (opts.embedding === false && !config.tieWordEmbeddings) needed.delete(EMBED);
  // A quantized matrix is stored under three names (quantized-checkpoint.ts) instead of its own.
  const storedFor = new Map<string, string>();
  if (config.quantization) for (const n of all.keys()) for (const p of packedNames(n)) storedFor.set(p, n);
  const wanted = opts.layers ? new Set([...needed.keys()].flatMap((n) => [n, ...(config.quantization ? packedNames(n) : [])])) : undefined;
  const raw = await readCheckpoint(source, wanted);
  const parts = (name: string) => packedNames(name).map((n) => raw.get(n)) as [StoredTensor, StoredTensor, StoredTensor];
  for (const [name, t] of raw) {
    const quantized = storedFor.get(name);
    if (quantized) {
      if (name === packedNames(quantized)[0]) checkPacked(source.location, quantized, all.get(quantized)!, parts(quantized));
      continue;
    }
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
  for (const [name, shape] of needed)
    if (!raw.has(name) && !(config.quantization && raw.has(packedNames(name)[0])))
      throw new ModelError(
        "tensor_missing",
        `${source.location}: tensor "${name}" ${JSON.stringify(shape)} is missing from the checkpoint`,
      );
  return {
    shapes: needed,
    async read(name) {
      const shape = needed.get(name);
      if (!shape) throw new ModelError("input_invalid", `"${name}" is not a tensor this load holds`);
      const t = raw.get(name);
      return t ? toFloat32(t.dtype as "F32" | "F16" | "BF16", await t.bytes()) : unpackWeight(source.location, name, shape, parts(name));
    },
  };
}

/** The checkpoint's tensors (openWeights), read one at a time: with range reads, what a load holds besides the weights it keeps. */
export async function loadWeights(source: ModelSource, config: LlamaConfig, opts: LoadOptions = {}): Promise<Map<string, BaseTensor>> {
  const { shapes, read } = await openWeights(source, config, opts);
  const weights = new Map<string, BaseTensor>();
  for (const name of shapes.keys()) weights.set(name, await read(name));
  return weights;
}

export async function loadModel(source: ModelSource, opts: LoadOptions = {}): Promise<LoadedModel> {
  const config = await loadConfig(source);
  return { config, weights: await loadWeights(source, config, opts), tokenizer: await loadModelTokenizer(source) };
}
