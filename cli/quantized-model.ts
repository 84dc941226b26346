// Writes a pre-quantized checkpoint (src/engine/quantized-checkpoint.ts) a tensor at a time: the header
// is computed from the config first, then each tensor is quantized and written at its offset, so the
// writer holds one tensor, never the model (a 1B model is 4 GB in float32).
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { toHfConfig, type LlamaConfig } from "../src/engine/config.ts";
import { ModelError } from "../src/engine/errors.ts";
import { expectedTensors } from "../src/engine/llama/names.ts";
import { type BaseTensor, quantizeInt4, quantizeInt8 } from "../src/engine/quantize.ts";
import { packedLayout, packWeight, type StoredQuant, storedBits } from "../src/engine/quantized-checkpoint.ts";
import { DTYPE_BYTES, type DType } from "../src/protocol/dtypes.ts";
import { safetensorsHeader, type TensorInput } from "../src/protocol/safetensors.ts";

type Layout = [string, { dtype: DType; shape: number[] }][];

/** The stored form of one tensor: a matrix quantized to its stored bits, anything else float32. */
function storedParts(name: string, shape: number[], t: BaseTensor, mode: StoredQuant): [string, TensorInput][] {
  if (!(t instanceof Float32Array)) throw new ModelError("input_invalid", `"${name}" is already quantized: quantize a float checkpoint`);
  if (shape.length !== 2) return [[name, { dtype: "F32", shape, data: t }]];
  const [rows, cols] = shape as [number, number];
  return packWeight(name, storedBits(name, mode) === 8 ? quantizeInt8(t, rows, cols) : quantizeInt4(t, rows, cols));
}

export interface QuantizedModel {
  dir: string;
  /** Bytes of model.safetensors. */
  bytes: number;
}

/**
 * Writes config.json (with its quantization_config), model.safetensors and the tokenizer files of `from`
 * (when given) into `dir`; `tensors` yields every tensor of the config once, in any order.
 */
export async function writeQuantizedModel(
  dir: string,
  config: LlamaConfig,
  mode: StoredQuant,
  tensors: AsyncIterable<[string, BaseTensor]> | Iterable<[string, BaseTensor]>,
  opts: { tokenizerFrom?: string; onTensor?: (done: number, total: number) => void } = {},
): Promise<QuantizedModel> {
  const shapes = expectedTensors(config);
  const layout: Layout = [...shapes].flatMap(
    ([name, shape]): Layout =>
      shape.length === 2 ? packedLayout(name, shape as [number, number], storedBits(name, mode)) : [[name, { dtype: "F32", shape }]],
  );
  const { header, order, dataBytes } = safetensorsHeader(layout);
  const byName = new Map(layout);
  const offsets = new Map<string, number>();
  let at = header.byteLength;
  for (const name of order) {
    offsets.set(name, at);
    const { dtype, shape } = byName.get(name)!;
    at += DTYPE_BYTES[dtype] * shape.reduce((a, b) => a * b, 1);
  }
  mkdirSync(dir, { recursive: true });
  const fd = openSync(join(dir, "model.safetensors"), "w");
  const written = new Set<string>();
  try {
    writeSync(fd, header, 0, header.byteLength, 0);
    for await (const [name, t] of tensors) {
      const shape = shapes.get(name);
      if (!shape || written.has(name)) throw new ModelError("input_invalid", `"${name}" is not a tensor of this model, or came twice`);
      for (const [part, { data }] of storedParts(name, shape, t, mode))
        writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 0, data.byteLength, offsets.get(part)!);
      written.add(name);
      opts.onTensor?.(written.size, shapes.size);
    }
  } finally {
    closeSync(fd);
  }
  const missing = [...shapes.keys()].filter((n) => !written.has(n));
  if (missing.length) throw new ModelError("tensor_missing", `${missing.length} tensors were not written, e.g. "${missing[0]}"`);
  writeFileSync(join(dir, "config.json"), `${JSON.stringify(toHfConfig({ ...config, quantization: mode }), null, 2)}\n`);
  for (const name of ["tokenizer.json", "tokenizer_config.json"])
    if (opts.tokenizerFrom && existsSync(join(opts.tokenizerFrom, name))) copyFileSync(join(opts.tokenizerFrom, name), join(dir, name));
  return { dir, bytes: header.byteLength + dataBytes };
}
