import { ProtocolError } from "./errors.ts";

/** Tensor element types, spelled as in the safetensors header. */
export type DType = "F32" | "F16" | "BF16" | "I8" | "U8" | "I32" | "U32" | "I64";

/** The element types `toFloat32` decodes. */
export type FloatDType = "F32" | "F16" | "BF16";

/** Bytes per element. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = Object.freeze({
  F32: 4,
  F16: 2,
  BF16: 2,
  I8: 1,
  U8: 1,
  I32: 4,
  U32: 4,
  I64: 8,
});

export function isFloatDType(x: DType): x is FloatDType {
  return x === "F32" || x === "F16" || x === "BF16";
}

export function isDType(x: unknown): x is DType {
  return typeof x === "string" && Object.hasOwn(DTYPE_BYTES, x);
}

// Values are little-endian on the wire. Typed arrays use the platform's byte order, which is
// little-endian on every engine this code targets (V8 and workerd on x86-64 and arm64), so F32
// bytes are viewed directly; 16-bit values are assembled from bytes, which also avoids alignment.

/**
 * Decodes little-endian F32, F16 or BF16 bytes to float32, exactly (every F16 and BF16 value,
 * subnormals, infinities and NaN payloads included, is a float32). For F32 the result is a view
 * sharing memory with `bytes` when `bytes.byteOffset` is 4-aligned, and a copy otherwise.
 */
export function toFloat32(dtype: FloatDType, bytes: Uint8Array): Float32Array {
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new ProtocolError("bad_byte_length", `${dtype} data must be a multiple of ${size} bytes, got ${bytes.byteLength}`);
  }
  const n = bytes.byteLength / size;
  if (dtype === "F32") {
    return bytes.byteOffset % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset, n) : new Float32Array(bytes.slice().buffer);
  }
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const h = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
    bits[i] = dtype === "BF16" ? h << 16 : f16ToF32Bits(h);
  }
  return out;
}

function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return sign | 0x7f800000 | (mant << 13); // inf, NaN (payload kept)
  if (exp !== 0) return sign | ((exp + 112) << 23) | (mant << 13); // rebias 15 -> 127
  if (mant === 0) return sign;
  // Subnormal mant * 2^-24: normalise so the leading 1 becomes the implicit bit.
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return sign | (e << 23) | ((m & 0x3ff) << 13);
}

/** Encodes float32 to F16 bit patterns, rounding to nearest, ties to even; NaN stays NaN. */
export function float32ToF16(values: Float32Array): Uint16Array<ArrayBuffer> {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00 | ((abs >>> 13) & 0x3ff); // quiet NaN, top payload bits
  if (abs >= 0x477ff000) return sign | 0x7c00; // >= 65520 (65504 + half an ulp, tie to even) -> inf
  if (abs >= 0x38800000) {
    // Normal in F16 (>= 2^-14): rebias the exponent 127 -> 15 and round the 13 dropped mantissa
    // bits; a carry correctly ripples into the exponent.
    return sign | ((abs - 0x38000000 + 0xfff + ((abs >>> 13) & 1)) >>> 13);
  }
  if (abs <= 0x33000000) return sign; // <= 2^-25: rounds to zero (2^-25 is a tie, 0 is even)
  // Subnormal in F16: value = m * 2^(e-150); in units of 2^-24 that is m >> (126 - e).
  const e = abs >>> 23;
  const m = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - e;
  const q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q);
}

/** Encodes float32 to BF16 bit patterns, rounding to nearest, ties to even; NaN stays NaN. */
export function float32ToBF16(values: Float32Array): Uint16Array<ArrayBuffer> {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    // Plain rounding could carry a NaN with a low-only payload into infinity: force it quiet.
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x0040 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}
