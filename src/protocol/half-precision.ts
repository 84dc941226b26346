// A float32 safetensors file (a version, as the aggregator keeps it) converted to F16 or BF16 as it streams
// (issue 21, compression of versions): its header rewritten for the new dtype, then each value converted
// (round to nearest, ties to even: dtypes.ts) a chunk at a time, so the coordinator holds one chunk of a
// version however large, and a client downloads half the bytes.
import { float32ToBF16, float32ToF16 } from "./dtypes.ts";
import { readSafetensorsHeader, SafetensorsError, safetensorsHeader } from "./safetensors.ts";

const concat = (a: Uint8Array, b: Uint8Array) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};

/**
 * `source`, an F32 safetensors stream, as `dtype`: its length in bytes once converted, and the stream. Throws
 * SafetensorsError on a header that is not all F32 tensors laid out in the writer's order.
 */
export async function halfPrecisionStream(
  source: ReadableStream<Uint8Array>,
  dtype: "F16" | "BF16",
): Promise<{ bytes: number; stream: ReadableStream<Uint8Array> }> {
  const reader = source.getReader();
  try {
    return await convert(reader, dtype);
  } catch (e) {
    await reader.cancel(e).catch(() => undefined);
    throw e;
  }
}

/** The conversion once the source is being read (halfPrecisionStream). */
async function convert(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  dtype: "F16" | "BF16",
): Promise<{ bytes: number; stream: ReadableStream<Uint8Array> }> {
  let held = new Uint8Array(0);
  const more = async () => {
    const r = await reader.read();
    if (r.done) throw new SafetensorsError("too_short", "the version ended inside its header");
    held = concat(held, r.value);
  };
  while (held.length < 8) await more();
  const n = Number(new DataView(held.buffer, held.byteOffset, 8).getBigUint64(0, true));
  while (held.length < 8 + n) await more();
  const header = readSafetensorsHeader(held.subarray(0, 8 + n));
  const byOffset = [...header.tensors].sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0]);
  const bad = byOffset.find(([, t]) => t.dtype !== "F32");
  if (bad) throw new SafetensorsError("unknown_dtype", `tensor "${bad[0]}" is ${bad[1].dtype}; only F32 versions convert`);
  const converted = safetensorsHeader(
    byOffset.map(([name, t]) => [name, { dtype, shape: t.shape }] as const),
    header.metadata,
  );
  // Values convert in place of one another, so both files must lay their tensors out in the same order.
  if (converted.order.join("\n") !== byOffset.map(([name]) => name).join("\n"))
    throw new SafetensorsError("bad_offsets", "the version's tensors are not in the writer's order");
  const encode = dtype === "F16" ? float32ToF16 : float32ToBF16;
  let pending: Uint8Array | null = held.subarray(8 + n);
  let carry = new Uint8Array(0);
  const stream = new ReadableStream<Uint8Array>({
    start: (controller) => controller.enqueue(converted.header),
    // Each pull enqueues converted values or ends the stream; a value split between chunks waits in `carry`.
    async pull(controller) {
      for (;;) {
        let chunk: Uint8Array;
        if (pending) {
          chunk = pending;
          pending = null;
        } else {
          const r = await reader.read();
          if (r.done) {
            if (carry.length) controller.error(new SafetensorsError("out_of_bounds", "the version ended inside a value"));
            else controller.close();
            return;
          }
          chunk = r.value;
        }
        const all = carry.length ? concat(carry, chunk) : chunk;
        const usable = all.length - (all.length % 4);
        carry = all.slice(usable);
        if (usable === 0) continue;
        const values = new Float32Array(all.slice(0, usable).buffer);
        // F16 holds magnitudes up to 65504: a larger finite value would arrive as an infinity.
        const far = dtype === "F16" ? values.find((x) => Number.isFinite(x) && Math.abs(x) >= 65520) : undefined;
        if (far !== undefined) {
          controller.error(new SafetensorsError("out_of_bounds", `the version holds ${far}, beyond F16's range: ask for BF16`));
          return;
        }
        controller.enqueue(new Uint8Array(encode(values).buffer));
        return;
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return { bytes: converted.header.length + converted.dataBytes, stream };
}
