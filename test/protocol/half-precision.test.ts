// A version converted to F16 or BF16 as it streams (issue 21, compression of versions): the same file as one
// written in that dtype from the same values, whatever chunks the stream arrives in; a version with a tensor
// that is not F32 is refused.
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { float32ToBF16, float32ToF16 } from "../../src/protocol/dtypes.ts";
import { halfPrecisionStream } from "../../src/protocol/half-precision.ts";
import { writeSafetensors } from "../../src/protocol/safetensors.ts";

const tensors = {
  "b.weight": normalSamples(seededUniform(1), 37, 0.3),
  "a.weight": normalSamples(seededUniform(2), 64 * 3, 2),
  "c.bias": Float32Array.of(65504, 1e-8, -0, Number.POSITIVE_INFINITY, Math.PI),
};
const f32 = writeSafetensors(
  Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: "F32" as const, shape: [t.length], data: t }])),
  { format: "pt", note: "kept" },
);
/** `bytes` as a stream of chunks `sizes` long, in turn. */
const chunked = (bytes: Uint8Array, sizes: readonly number[]) => {
  let at = 0;
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      const n = sizes[i++ % sizes.length]!;
      controller.enqueue(bytes.slice(at, at + n));
      at += n;
    },
  });
};
const collect = async (s: ReadableStream<Uint8Array>) => new Uint8Array(await new Response(s).arrayBuffer());

describe("a version as F16 or BF16", () => {
  for (const [dtype, convert] of [
    ["F16", float32ToF16],
    ["BF16", float32ToBF16],
  ] as const)
    it(`${dtype}: the file written in ${dtype} from the same values, in any chunks`, async () => {
      const want = writeSafetensors(
        Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype, shape: [t.length], data: convert(t) }])),
        { format: "pt", note: "kept" },
      );
      for (const sizes of [[f32.length], [1], [3, 5, 7], [4096, 13]]) {
        const { bytes, stream } = await halfPrecisionStream(chunked(f32, sizes), dtype);
        expect(bytes).toBe(want.length);
        expect(await collect(stream)).toEqual(want);
      }
    });

  it("ends the stream with an error at a value beyond F16's range (BF16 holds it)", async () => {
    const far = writeSafetensors({ a: { dtype: "F32", shape: [3], data: Float32Array.of(1, 70000, 2) } });
    const { stream } = await halfPrecisionStream(chunked(far, [64]), "F16");
    await expect(collect(stream)).rejects.toThrow("the version holds 70000, beyond F16's range: ask for BF16");
    const bf16 = await halfPrecisionStream(chunked(far, [64]), "BF16");
    expect((await collect(bf16.stream)).length).toBe(bf16.bytes);
  });

  it("refuses a version with a tensor that is not F32", async () => {
    const mixed = writeSafetensors({ a: { dtype: "F16", shape: [2], data: new Uint16Array(2) } });
    await expect(halfPrecisionStream(chunked(mixed, [100]), "F16")).rejects.toThrow('tensor "a" is F16; only F32 versions convert');
  });
});
