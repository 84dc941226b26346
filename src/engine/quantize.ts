// Weight-only quantization of frozen linears, stored as ONNX DequantizeLinear operands
// (symmetric: zero point 0). Weights are [out, in] as in Hugging Face checkpoints.

export type QuantMode = "f32" | "int8" | "int4";

export const INT4_BLOCK = 32;

export interface Int8Weight {
  kind: "int8";
  shape: [number, number];
  q: Int8Array;
  /** One scale per output row (per-output-channel). */
  scale: Float32Array;
}

export interface Int4Weight {
  kind: "int4";
  shape: [number, number];
  /** Two values a byte, low nibble first (ONNX INT4 packing), row-major over [out, in]. */
  packed: Uint8Array;
  /** [out, in / 32]: one scale per block of 32 inputs. */
  scale: Float32Array;
}

/** A frozen matrix as a quantized checkpoint stores it (src/engine/quantized-checkpoint.ts). */
export type QuantWeight = Int8Weight | Int4Weight;

/** A base tensor as loaded: float32, or a matrix kept in its stored quantized form. */
export type BaseTensor = Float32Array | QuantWeight;

/** A base tensor's float32 values: itself, or its quantized values dequantized (one tensor's worth of memory). */
export function floatOf(t: BaseTensor): Float32Array {
  return t instanceof Float32Array ? t : dequantize(t);
}

/** Every base tensor as float32 (for code that needs float weights: references, other engines). */
export function floatWeights(w: ReadonlyMap<string, BaseTensor>): Map<string, Float32Array> {
  return new Map([...w].map(([n, t]) => [n, floatOf(t)]));
}

/** How many values a base tensor stands for. */
export function elementCount(t: BaseTensor): number {
  return t instanceof Float32Array ? t.length : t.shape[0] * t.shape[1];
}

/** int8 per output channel: scale = max|w| / 127 over each row. */
export function quantizeInt8(w: Float32Array, rows: number, cols: number): Int8Weight {
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(w[r * cols + c]!));
    const s = max / 127 || 1;
    scale[r] = s;
    for (let c = 0; c < cols; c++) q[r * cols + c] = Math.round(w[r * cols + c]! / s);
  }
  return { kind: "int8", shape: [rows, cols], q, scale };
}

/**
 * int4 in blocks of 32 along the input dimension, as llama.cpp's Q4_0: the scale is the block's
 * value of largest magnitude divided by -8, so that value maps to -8 and the whole range [-8, 7] is used.
 */
export function quantizeInt4(w: Float32Array, rows: number, cols: number): Int4Weight {
  if (cols % INT4_BLOCK !== 0) throw new Error(`int4 quantization needs the input size (${cols}) to be a multiple of ${INT4_BLOCK}`);
  const blocks = cols / INT4_BLOCK;
  const packed = new Uint8Array((rows * cols) / 2);
  const scale = new Float32Array(rows * blocks);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < blocks; b++) {
      const start = r * cols + b * INT4_BLOCK;
      let extreme = 0;
      for (let i = 0; i < INT4_BLOCK; i++) if (Math.abs(w[start + i]!) > Math.abs(extreme)) extreme = w[start + i]!;
      const s = extreme / -8 || 1;
      scale[r * blocks + b] = s;
      for (let i = 0; i < INT4_BLOCK; i++) {
        const q = Math.max(-8, Math.min(7, Math.round(w[start + i]! / s)));
        const idx = start + i;
        packed[idx >> 1]! |= (q & 0xf) << ((idx & 1) * 4);
      }
    }
  return { kind: "int4", shape: [rows, cols], packed, scale };
}

/** The float weights a quantized weight stands for (DequantizeLinear's definition). */
export function dequantize(w: QuantWeight): Float32Array {
  const [rows, cols] = w.shape;
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const r = Math.floor(i / cols);
    if (w.kind === "int8") out[i] = w.q[i]! * w.scale[r]!;
    else {
      const nibble = (w.packed[i >> 1]! >> ((i & 1) * 4)) & 0xf;
      const q = nibble >= 8 ? nibble - 16 : nibble;
      out[i] = q * w.scale[r * (cols / INT4_BLOCK) + Math.floor((i % cols) / INT4_BLOCK)]!;
    }
  }
  return out;
}
