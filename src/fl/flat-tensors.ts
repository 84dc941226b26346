// A tensor file seen as one flat float32 vector, read a segment at a time: how the aggregator folds an
// upload into its running sum and closes a round in memory bounded by a segment, not by the adapter
// (a Worker's isolate has 128 MB; platform-limits.ts). The flat order is the global version's data
// order; an upload may list its tensors in any order and in F32, F16 or BF16.
import { DTYPE_BYTES, isFloatDType, toFloat32, type FloatDType } from "../protocol/dtypes.ts";
import { readSafetensorsHeader, SafetensorsError, type SafetensorsHeader } from "../protocol/safetensors.ts";
import { FlError } from "./errors.ts";
import { readScales } from "./int8-updates.ts";
import { checkIndices, firstAtOrAfter, INDICES_SUFFIX, type SparseTensor } from "./sparse-updates.ts";

/**
 * Room an update's header may take beyond its global version's (its metadata: num_examples, metrics of at
 * most 2 KiB, the format): a longer header is refused before it is parsed, as parsing a header costs
 * memory and time in proportion to it (a header of half a million empty tensors took 335 MiB and 4 s).
 */
export const UPDATE_METADATA_BYTES = 64 * 1024;

/**
 * An update's header, refused past `maxHeaderBytes` before it is parsed; bytes whose declared header runs
 * past their end are not a tensor file at all (header_out_of_bounds), whatever that length.
 */
export function readUpdateHeader(body: Uint8Array, maxHeaderBytes: number): SafetensorsHeader {
  if (body.length >= 8) {
    const n = new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0, true);
    if (n > BigInt(body.length - 8))
      throw new SafetensorsError(
        "header_out_of_bounds",
        `header length ${n} bytes runs past the end of the input (${body.length - 8} bytes after the length): not a safetensors file`,
      );
  }
  return readSafetensorsHeader(body, { maxHeaderBytes });
}

export interface FlatTensor {
  name: string;
  shape: number[];
  /** Index of its first element in the flat vector. */
  start: number;
  length: number;
}

export interface FlatLayout {
  tensors: FlatTensor[];
  /** Elements in all. */
  total: number;
}

/** The layout of a tensor file's header, in its data order. */
export function flatLayout(header: SafetensorsHeader): FlatLayout {
  const tensors: FlatTensor[] = [];
  let total = 0;
  for (const [name, t] of header.tensors) {
    const length = t.shape.reduce((a, b) => a * b, 1);
    tensors.push({ name, shape: t.shape, start: total, length });
    total += length;
  }
  return { tensors, total };
}

/** The pieces of [start, start + n) that lie in each tensor: the tensor, the offset in it, the offset in the segment, the count. */
export function* pieces(
  layout: FlatLayout,
  start: number,
  n: number,
): Generator<{ tensor: FlatTensor; at: number; into: number; count: number }> {
  for (const tensor of layout.tensors) {
    const from = Math.max(start, tensor.start);
    const to = Math.min(start + n, tensor.start + tensor.length);
    if (from < to) yield { tensor, at: from - tensor.start, into: from - start, count: to - from };
  }
}

/** A flat vector that fills `out` with its elements [start, start + out.length). */
export interface FlatSource {
  total: number;
  read(start: number, out: Float32Array): void;
}

/**
 * An upload's tensors as a flat source in `layout`'s order, checked without copying the body: a header at
 * most `globalHeaderBytes` + UPDATE_METADATA_BYTES long, the same names and shapes as the layout, float
 * dtypes (or I8 with its scale, int8-updates.ts; or sparse, sparse-updates.ts), no bytes past the last tensor. Tensors `frozen` names must
 * be left out, and read as zeros (their change). Throws FlError `tensor_mismatch` or SafetensorsError.
 */
export function tensorFileSource(
  body: Uint8Array,
  layout: FlatLayout,
  globalHeaderBytes: number,
  what: string,
  frozen: ((tensor: string) => boolean) | null = null,
): { source: FlatSource; metadata: Record<string, string> } {
  const header = readUpdateHeader(body, globalHeaderBytes + UPDATE_METADATA_BYTES);
  if (header.dataStart + header.dataBytes !== body.length)
    throw new SafetensorsError(
      body.length > header.dataStart + header.dataBytes ? "trailing_bytes" : "out_of_bounds",
      `${what}: the data buffer is ${body.length - header.dataStart} bytes, the header describes ${header.dataBytes}`,
    );
  const sent = frozen ? layout.tensors.filter((t) => !frozen(t.name)) : layout.tensors;
  // Sparse tensors (sparse-updates.ts): their positions and values, read once and checked.
  const sparse = new Map<string, SparseTensor>();
  for (const t of layout.tensors) {
    const got = header.tensors.get(t.name);
    if (frozen?.(t.name)) {
      if (got) throw new FlError("tensor_mismatch", `${what}: tensor "${t.name}" is frozen (its change is zero): leave it out`);
      continue;
    }
    if (!got) throw new FlError("tensor_mismatch", `${what}: tensor "${t.name}" ${JSON.stringify(t.shape)} is missing`);
    const positions = header.tensors.get(t.name + INDICES_SUFFIX);
    if (positions) {
      if (got.shape.length !== 1 || !isFloatDType(got.dtype) || positions.dtype !== "I32" || positions.shape.length !== 1)
        throw new FlError(
          "tensor_mismatch",
          `${what}: sparse tensor "${t.name}" is its values (1-D, float) and "${t.name}${INDICES_SUFFIX}" their positions (1-D, I32)`,
        );
      const from = header.dataStart + positions.dataOffsets[0];
      const indices = new Int32Array(body.slice(from, header.dataStart + positions.dataOffsets[1]).buffer);
      checkIndices(t.name, indices, got.shape[0]!, t.length, what);
      const at = header.dataStart + got.dataOffsets[0];
      sparse.set(t.name, { indices, values: toFloat32(got.dtype as FloatDType, body.subarray(at, header.dataStart + got.dataOffsets[1])) });
      continue;
    }
    if (got.shape.length !== t.shape.length || got.shape.some((d, i) => d !== t.shape[i]))
      throw new FlError(
        "tensor_mismatch",
        `${what}: tensor "${t.name}" has shape ${JSON.stringify(got.shape)}, expected ${JSON.stringify(t.shape)}`,
      );
    if (!isFloatDType(got.dtype) && got.dtype !== "I8")
      throw new FlError(
        "tensor_mismatch",
        `${what}: tensor "${t.name}" is ${got.dtype}; deltas and adapters are float tensors (or I8 with scales)`,
      );
  }
  const scales = readScales(
    header.metadata,
    sent.filter((t) => !sparse.has(t.name) && header.tensors.get(t.name)?.dtype === "I8").map((t) => t.name),
    what,
  );
  if (header.tensors.size !== sent.length + sparse.size) {
    const names = new Set(layout.tensors.map((t) => t.name));
    const extra = [...header.tensors.keys()].find((n) => !names.has(n));
    throw new FlError("tensor_mismatch", `${what}: tensor "${extra}" is not part of the global adapter`);
  }
  const read = (start: number, out: Float32Array) => {
    for (const { tensor, at, into, count } of pieces(layout, start, out.length)) {
      const info = header.tensors.get(tensor.name);
      const s = sparse.get(tensor.name);
      if (!info || s) {
        out.fill(0, into, into + count);
        for (let j = s ? firstAtOrAfter(s.indices, at) : 0; s && j < s.indices.length && s.indices[j]! < at + count; j++)
          out[into + s.indices[j]! - at] = s.values[j]!;
        continue;
      }
      const size = DTYPE_BYTES[info.dtype];
      const from = header.dataStart + info.dataOffsets[0] + at * size;
      if (info.dtype === "I8") {
        const scale = scales.get(tensor.name)!;
        const q = new Int8Array(body.buffer, body.byteOffset + from, count);
        for (let i = 0; i < count; i++) out[into + i] = q[i]! * scale;
      } else out.set(toFloat32(info.dtype as FloatDType, body.subarray(from, from + count * size)), into);
    }
  };
  return { source: { total: layout.total, read }, metadata: header.metadata };
}

/** A dense vector as a flat source (FedKSeed's per-seed sums). */
export function arraySource(values: Float32Array): FlatSource {
  return { total: values.length, read: (start, out) => out.set(values.subarray(start, start + out.length)) };
}

/** A flat source's tensors, whole: for the small versions a method checks at once (prompts, step sizes). */
export function readTensors(layout: FlatLayout, source: FlatSource): Map<string, Float32Array> {
  const flat = new Float32Array(layout.total);
  source.read(0, flat);
  return new Map(layout.tensors.map((t) => [t.name, flat.slice(t.start, t.start + t.length)]));
}
