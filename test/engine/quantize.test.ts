import { describe, expect, it } from "vitest";
import { ForwardModel } from "../../src/engine/forward.ts";
import { dequantize, quantizeInt4, quantizeInt8 } from "../../src/engine/quantize.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../../src/engine/runtimes/ort-web.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { effectiveWeights } from "../fixtures/quantized.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { referenceLogits } from "../reference/llama-f64.ts";

describe("int8 per-output-channel", () => {
  it("maps each row's largest magnitude to ±127 and rounds the rest", () => {
    const w = Float32Array.from([1, -0.4, 0.25, 0.1, /* row 2 */ -4, 2.2, 0, 1]);
    const q = quantizeInt8(w, 2, 4);
    expect(Array.from(q.q)).toEqual([127, -51, 32, 13, -127, 70, 0, 32]);
    expect(q.scale[0]).toBeCloseTo(1 / 127, 7);
    expect(q.scale[1]).toBeCloseTo(4 / 127, 7);
    const back = dequantize(q);
    for (let i = 0; i < w.length; i++) expect(Math.abs(back[i]! - w[i]!)).toBeLessThanOrEqual(q.scale[i >> 2]! / 2 + 1e-7);
  });
});

describe("int4 blocks of 32 (Q4_0 style)", () => {
  it("packs two values a byte, low nibble first, and maps the block extreme to -8", () => {
    const w = new Float32Array(32);
    w[0] = -1; // extreme: scale = -1 / -8 = 0.125, q = -8
    w[1] = 0.5; // q = 4
    w[2] = 0.875; // q = 7
    w[3] = -0.3; // q = round(-2.4) = -2
    const q = quantizeInt4(w, 1, 32);
    expect(q.scale[0]).toBeCloseTo(0.125, 7);
    expect(q.packed[0]).toBe(0x48); // low nibble -8 (0x8), high nibble 4
    expect(q.packed[1]).toBe(0xe7); // low 7, high -2 (0xe)
    expect(Array.from(dequantize(q).subarray(0, 4))).toEqual([-1, 0.5, 0.875, -0.25]);
  });

  it("refuses an input size that is not a multiple of the block", () => {
    expect(() => quantizeInt4(new Float32Array(48), 1, 48)).toThrow(/multiple of 32/);
  });
});

describe.each([
  ["ort-node", ortNodeRuntime],
  ["ort-web", ortWebRuntime],
] as const)("quantized graphs on %s", (_, makeRuntime) => {
  it.each(["int8", "int4"] as const)("%s: dequantization in the graph equals the reference on dequantized weights", async (mode) => {
    // o_proj in = heads*headDim = hidden; down_proj in = intermediate (96 = 3 blocks of 32).
    const config = tinyConfig({ hidden: 64, intermediate: 96, heads: 4, kvHeads: 2, tied: mode === "int4" });
    const weights = tinyWeights(config, 4);
    const ids = [[1, 7, 99, 42, 250, 3]];
    const model = await ForwardModel.create(makeRuntime(), config, weights, { kind: "forward", quant: mode });
    const { logits } = await model.run({ ids });
    const ref = referenceLogits(config, effectiveWeights(weights, config, mode), { ids });
    expect(maxAbsDiff(logits, ref)).toBeLessThan(1e-4);
    // ...and it differs from the float model, so the quantization really happened.
    expect(maxAbsDiff(logits, referenceLogits(config, weights, { ids }))).toBeGreaterThan(1e-3);
  });
});
