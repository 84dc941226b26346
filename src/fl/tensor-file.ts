// Named float tensors to and from safetensors bytes: how adapters, deltas and server state are stored
// and cross the wire (never as JSON numbers).
import { type FloatDType, float32ToBF16, float32ToF16, toFloat32 } from "../protocol/dtypes.ts";
import { readSafetensors, readSafetensorsHeader, writeSafetensors, type TensorInput } from "../protocol/safetensors.ts";
import { FlError } from "./errors.ts";
import type { TensorMap } from "./tensors.ts";

export interface TensorFile {
  tensors: TensorMap;
  shapes: Map<string, number[]>;
  metadata: Record<string, string>;
}

/** Parses and validates safetensors bytes (throws SafetensorsError); float tensors only, read as float32. */
export function decodeTensorFile(bytes: Uint8Array, what: string): TensorFile {
  const file = readSafetensors(bytes);
  const tensors: TensorMap = new Map();
  const shapes = new Map<string, number[]>();
  for (const [name, t] of file.tensors) {
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16")
      throw new FlError("tensor_mismatch", `${what}: tensor "${name}" is ${t.dtype}; deltas and adapters are float tensors`);
    tensors.set(name, Float32Array.from(toFloat32(t.dtype, t.data)));
    shapes.set(name, t.shape);
  }
  return { tensors, shapes, metadata: file.metadata };
}

/** Tensor names and shapes from the header alone (nothing decoded). */
export function tensorShapes(bytes: Uint8Array): Map<string, number[]> {
  return new Map([...readSafetensorsHeader(bytes).tensors].map(([name, t]) => [name, t.shape]));
}

export function encodeTensorFile(
  tensors: TensorMap,
  shapes: ReadonlyMap<string, readonly number[]>,
  metadata: Record<string, string> = { format: "pt" },
  dtype: FloatDType = "F32",
): Uint8Array {
  const input: Record<string, TensorInput> = {};
  // F16 and BF16 round each value to nearest, ties to even (src/protocol/dtypes.ts).
  const encode = { F32: (t: Float32Array) => t, F16: float32ToF16, BF16: float32ToBF16 }[dtype];
  for (const [name, t] of tensors) input[name] = { dtype, shape: [...(shapes.get(name) ?? [t.length])], data: encode(t) };
  return writeSafetensors(input, metadata);
}

/** Refuses a file whose tensor names or shapes differ from the expected ones, naming the first difference. */
export function assertSameShapes(
  expected: ReadonlyMap<string, readonly number[]>,
  actual: ReadonlyMap<string, readonly number[]>,
  what: string,
): void {
  for (const [name, shape] of expected) {
    const got = actual.get(name);
    if (!got) throw new FlError("tensor_mismatch", `${what}: tensor "${name}" ${JSON.stringify(shape)} is missing`);
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
      throw new FlError("tensor_mismatch", `${what}: tensor "${name}" has shape ${JSON.stringify(got)}, expected ${JSON.stringify(shape)}`);
  }
  for (const name of actual.keys())
    if (!expected.has(name)) throw new FlError("tensor_mismatch", `${what}: tensor "${name}" is not part of the global adapter`);
}
