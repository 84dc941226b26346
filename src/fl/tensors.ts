import { FlError } from "./errors.ts";

/** Named flat float32 tensors (an adapter, a delta, an optimizer slot), in insertion order. */
export type TensorMap = Map<string, Float32Array>;

/** A deep copy: same names, same order, new buffers. */
export function cloneTensors(tensors: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, t] of tensors) out.set(name, t.slice());
  return out;
}

/**
 * Throws FlError `tensor_mismatch` unless `actual` has exactly the tensor names of `expected`, each with
 * the same number of elements. `what` names the two sides in the message, e.g. "delta vs running sum".
 */
export function assertSameTensors(expected: TensorMap, actual: TensorMap, what: string): void {
  for (const [name, t] of expected) {
    const other = actual.get(name);
    if (other === undefined) throw new FlError("tensor_mismatch", `${what}: tensor "${name}" is missing`);
    if (other.length !== t.length)
      throw new FlError("tensor_mismatch", `${what}: tensor "${name}" has ${other.length} elements, expected ${t.length}`);
  }
  for (const name of actual.keys()) if (!expected.has(name)) throw new FlError("tensor_mismatch", `${what}: unexpected tensor "${name}"`);
}

/** Throws FlError `non_finite` naming the first tensor and index holding a NaN or an infinity. */
export function assertFinite(tensors: TensorMap, what: string): void {
  for (const [name, t] of tensors) {
    for (let i = 0; i < t.length; i++) {
      const x = t[i]!;
      if (!Number.isFinite(x)) throw new FlError("non_finite", `${what}: tensor "${name}" holds ${x} at index ${i}`);
    }
  }
}
