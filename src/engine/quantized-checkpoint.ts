// Pre-quantized bases in compressed-tensors' "pack-quantized" layout, the one llm-compressor writes and
// vLLM and transformers load (github.com/neuralmagic/compressed-tensors, PackedQuantizationCompressor):
// a quantized matrix `<module>.weight` [out, in] is stored as
//   `<module>.weight_packed` I32 [out, in * bits / 32]: the unsigned values q + 2^(bits-1), value j of a
//     word in its bits [j * bits, (j + 1) * bits), words little-endian;
//   `<module>.weight_scale` float [out, groups]: one scale per row (int8, "channel") or per 32 inputs
//     (int4, "group"); symmetric, so no zero point: w = q * scale;
//   `<module>.weight_shape` I64 [2]: [out, in].
// Little-endian words make the packed bytes those of ONNX's int8 and INT4 tensors (low nibble first)
// with the sign bit of each value flipped, so decoding is one XOR per byte and never goes through float.
import * as v from "valibot";
import { DTYPE_BYTES, type DType, type FloatDType, toFloat32 } from "../protocol/dtypes.ts";
import type { TensorInput } from "../protocol/safetensors.ts";
import { ModelError } from "./errors.ts";
import { EMBED, LM_HEAD } from "./llama/names.ts";
import { INT4_BLOCK, type QuantMode, type QuantWeight } from "./quantize.ts";

export type StoredQuant = Exclude<QuantMode, "f32">;

export const PACKED = "_packed";
export const SCALE = "_scale";
export const SHAPE = "_shape";

/** The three checkpoint names that stand for a quantized `<module>.weight`. */
export function packedNames(weightName: string): [packed: string, scale: string, shape: string] {
  return [`${weightName}${PACKED}`, `${weightName}${SCALE}`, `${weightName}${SHAPE}`];
}

/**
 * How a matrix is stored under `mode`: the embedding and an untied head are always int8 per row (a Gather
 * cannot read int4, and the vocabulary rows are what a split client's head holds); the linears take the mode.
 */
export function storedBits(name: string, mode: StoredQuant): 8 | 4 {
  return name === EMBED || name === LM_HEAD || mode === "int8" ? 8 : 4;
}

const bitsMessage = (name: string, bits: number, cols: number) =>
  `"${name}": ${bits}-bit packing needs the input size (${cols}) to be a multiple of ${bits === 8 ? 4 : INT4_BLOCK}`;

/** The dtypes and shapes of a matrix's three stored tensors, without its values (for a header written first). */
export function packedLayout(name: string, shape: readonly [number, number], bits: 8 | 4): [string, { dtype: DType; shape: number[] }][] {
  const [rows, cols] = shape;
  if (cols % (bits === 8 ? 4 : INT4_BLOCK) !== 0) throw new ModelError("input_invalid", bitsMessage(name, bits, cols));
  const [packed, scale, shapeName] = packedNames(name);
  return [
    [packed, { dtype: "I32", shape: [rows, (cols * bits) / 32] }],
    [scale, { dtype: "F32", shape: [rows, bits === 8 ? 1 : cols / INT4_BLOCK] }],
    [shapeName, { dtype: "I64", shape: [2] }],
  ];
}

/** A quantized matrix as its three stored tensors, in packedLayout's order. */
export function packWeight(name: string, w: QuantWeight): [string, TensorInput][] {
  const layout = packedLayout(name, w.shape, w.kind === "int8" ? 8 : 4);
  const stored = w.kind === "int8" ? new Uint8Array(w.q.buffer, w.q.byteOffset, w.q.byteLength) : w.packed;
  const packed = stored.map((b) => b ^ (w.kind === "int8" ? 0x80 : 0x88));
  const data = [packed, w.scale, BigInt64Array.from(w.shape, BigInt)];
  return layout.map(([n, t], i) => [n, { ...t, data: data[i]! }]);
}

/** One stored tensor: its header entry and its bytes on demand. */
export interface StoredTensor {
  dtype: DType;
  shape: number[];
  bytes(): Promise<Uint8Array>;
  /** Whether bytes() gives a fresh array the caller may change (a range read), not a view into a file the source keeps. */
  owned: boolean;
}

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Checks a quantized matrix's stored tensors against the shape config.json implies and returns its bit
 * width; reads no values. Throws ModelError naming the tensor.
 */
export function checkPacked(
  where: string,
  name: string,
  expected: readonly number[],
  parts: readonly [StoredTensor | undefined, StoredTensor | undefined, StoredTensor | undefined],
): 8 | 4 {
  const [packedName, scaleName, shapeName] = packedNames(name);
  const [packed, scale, shape] = parts;
  const missing = [packed ? null : packedName, scale ? null : scaleName, shape ? null : shapeName].filter((n) => n);
  if (missing.length)
    throw new ModelError("tensor_missing", `${where}: "${name}" is stored quantized but ${missing.join(", ")} is missing`);
  const [rows, cols] = expected as [number, number];
  const bits = packed!.shape.length === 2 && packed!.shape[0] === rows ? (packed!.shape[1]! * 32) / cols : Number.NaN;
  if (packed!.dtype !== "I32" || (bits !== 8 && bits !== 4))
    throw new ModelError(
      "tensor_shape",
      `${where}: "${packedName}" is ${packed!.dtype} ${JSON.stringify(packed!.shape)}; for "${name}" ${JSON.stringify(expected)} ` +
        `it must be I32 [${rows}, ${cols / 4}] (8 bits) or [${rows}, ${cols / 8}] (4 bits)`,
    );
  const layout = packedLayout(name, [rows, cols], bits);
  const want = layout[1]![1].shape;
  if (!(scale!.dtype === "F32" || scale!.dtype === "F16" || scale!.dtype === "BF16") || !same(scale!.shape, want))
    throw new ModelError(
      "tensor_shape",
      `${where}: "${scaleName}" is ${scale!.dtype} ${JSON.stringify(scale!.shape)}; ${bits}-bit symmetric weights take a float ` +
        `scale of shape ${JSON.stringify(want)} (${bits === 8 ? "per output channel" : `per block of ${INT4_BLOCK} inputs`})`,
    );
  if (!(shape!.dtype === "I64" || shape!.dtype === "I32") || !same(shape!.shape, [2]))
    throw new ModelError("tensor_shape", `${where}: "${shapeName}" must be an integer tensor of shape [2]`);
  return bits;
}

/** A checked quantized matrix's values, in the form graphs feed to DequantizeLinear. */
export async function unpackWeight(
  where: string,
  name: string,
  expected: readonly number[],
  parts: readonly [StoredTensor, StoredTensor, StoredTensor],
): Promise<QuantWeight> {
  const bits = checkPacked(where, name, expected, parts);
  const [packed, scale, shape] = parts;
  const shapeBytes = await shape.bytes();
  const view = new DataView(shapeBytes.buffer, shapeBytes.byteOffset, shapeBytes.byteLength);
  const size = DTYPE_BYTES[shape.dtype];
  const stated = [0, 1].map((i) => (size === 8 ? Number(view.getBigInt64(i * 8, true)) : view.getInt32(i * 4, true)));
  if (!same(stated, expected))
    throw new ModelError(
      "tensor_shape",
      `${where}: "${packedNames(name)[2]}" says ${JSON.stringify(stated)} but config.json implies ${JSON.stringify(expected)}`,
    );
  // In place where the bytes are the caller's own (a range read), so a client holds one copy, not two.
  const read = await packed.bytes();
  const values = packed.owned ? read : read.slice();
  const flip = bits === 8 ? 0x80 : 0x88;
  for (let i = 0; i < values.length; i++) values[i]! ^= flip;
  const scales = toFloat32(scale.dtype as FloatDType, await scale.bytes());
  const dims = expected as [number, number];
  return bits === 8
    ? { kind: "int8", shape: dims, q: new Int8Array(values.buffer, values.byteOffset, values.byteLength), scale: scales }
    : { kind: "int4", shape: dims, packed: values, scale: scales };
}

/** config.json's `quantization_config` for a checkpoint `fedflare quantize` writes. */
export function quantizationConfig(mode: StoredQuant): Record<string, unknown> {
  const scheme = (bits: 8 | 4) => ({
    num_bits: bits,
    type: "int",
    symmetric: true,
    dynamic: false,
    strategy: bits === 8 ? "channel" : "group",
    group_size: bits === 8 ? null : INT4_BLOCK,
    actorder: null,
    observer: "minmax",
  });
  // Targets by module name come before targets by class in compressed-tensors' matching.
  return {
    quant_method: "compressed-tensors",
    format: "pack-quantized",
    quantization_status: "compressed",
    config_groups: {
      vocabulary: { targets: ["Embedding", "lm_head"], weights: scheme(8), input_activations: null, output_activations: null },
      linears: { targets: ["Linear"], weights: scheme(mode === "int8" ? 8 : 4), input_activations: null, output_activations: null },
    },
    ignore: [],
    kv_cache_scheme: null,
  };
}

const Scheme = v.looseObject({
  num_bits: v.union([v.literal(8), v.literal(4)]),
  type: v.literal("int"),
  symmetric: v.literal(true),
});
const RawQuantizationConfig = v.looseObject({
  quant_method: v.literal("compressed-tensors"),
  format: v.literal("pack-quantized"),
  config_groups: v.record(
    v.string(),
    v.looseObject({ targets: v.array(v.string()), weights: Scheme, input_activations: v.optional(v.null()) }),
  ),
});

/**
 * The mode of config.json's `quantization_config` (that of its Linear group), or a ModelError naming the
 * field for a layout fedflare does not read (GPTQ, AWQ, bitsandbytes, asymmetric or activation schemes).
 */
export function parseQuantizationConfig(json: unknown): StoredQuant {
  const parsed = v.safeParse(RawQuantizationConfig, json);
  if (!parsed.success)
    throw new ModelError(
      "config_unsupported",
      `config.json: field "quantization_config.${v.getDotPath(parsed.issues[0]) ?? ""}": ${parsed.issues[0].message}; fedflare reads ` +
        `compressed-tensors "pack-quantized" symmetric int8/int4 weights (write them with \`fedflare quantize\`)`,
    );
  const linear = Object.values(parsed.output.config_groups).find((g) => g.targets.includes("Linear"));
  return linear?.weights.num_bits === 4 ? "int4" : "int8";
}
