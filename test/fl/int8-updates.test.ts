// Int8 uploads (issue 21, compression): stochastic rounding is unbiased and within one scale of each value;
// the aggregator's reader decodes I8 times its scale into the layout, and refuses an I8 tensor without a
// usable scale or scales of tensors that are not I8.
import { describe, expect, it } from "vitest";
import { refusalOf } from "./helpers.ts";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { deltaBody } from "../../src/fl/client/upload.ts";
import { flatLayout, tensorFileSource } from "../../src/fl/flat-tensors.ts";
import { quantizeInt8 } from "../../src/fl/int8-updates.ts";
import { encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader, writeSafetensors } from "../../src/protocol/safetensors.ts";

const values = normalSamples(seededUniform(3), 4096, 0.02);

describe("int8 updates", () => {
  it("round each value to a neighbouring level, unbiased over many draws", () => {
    const { q, scale } = quantizeInt8(values, seededUniform(5));
    const largest = values.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    expect(scale).toBeCloseTo(largest / 127, 9);
    expect(Math.max(...Array.from(q, Math.abs))).toBe(127);
    // Each decoded value is one of the two levels around it.
    values.forEach((x, i) => expect(Math.abs(q[i]! * scale - x)).toBeLessThan(scale));
    // The mean of 400 independent roundings of each value is the value, within 4 standard errors (≤ scale/2 / √400).
    const draws = 400;
    const sum = new Float64Array(values.length);
    const uniform = seededUniform(11);
    for (let d = 0; d < draws; d++) quantizeInt8(values, uniform).q.forEach((v, i) => (sum[i]! += v * scale));
    let worst = 0;
    values.forEach((x, i) => (worst = Math.max(worst, Math.abs(sum[i]! / draws - x) / (scale / 2 / Math.sqrt(draws)))));
    expect(worst).toBeLessThan(4.5);
    // Round to nearest would be biased: for x at a quarter level the mean must sit at a quarter, not at 0.
    expect(quantizeInt8(Float32Array.of(127, 0.25), () => 0.5).q[1]).toBe(0);
    expect(quantizeInt8(Float32Array.of(127, 0.25), () => 0.1).q[1]).toBe(1);
    expect(quantizeInt8(new Float32Array(3), Math.random)).toEqual({ q: new Int8Array(3), scale: 0 });
  });

  it("are read by the aggregator as I8 times their scale, in the layout; bad scales are refused", () => {
    const shapes = new Map([
      ["a", [64, 32]],
      ["b", [2048]],
    ]);
    const delta = new Map([
      ["a", values.subarray(0, 2048)],
      ["b", values.subarray(2048)],
    ]);
    const globalFile = encodeTensorFile(delta, shapes);
    const global = readSafetensorsHeader(globalFile);
    const layout = flatLayout(global);
    const body = deltaBody({ delta, numExamples: 3, metrics: {} }, shapes, "I8", seededUniform(9));
    expect(body.length).toBeLessThan(globalFile.length / 3);
    const { source, metadata } = tensorFileSource(body, layout, global.dataStart, "upload");
    const out = new Float32Array(layout.total);
    source.read(0, out);
    const scales = JSON.parse(metadata.scales!) as Record<string, number>;
    const header = readSafetensorsHeader(body);
    for (const t of layout.tensors) {
      const info = header.tensors.get(t.name)!;
      const q = new Int8Array(body.buffer, body.byteOffset + header.dataStart + info.dataOffsets[0], t.length);
      expect(out.subarray(t.start, t.start + t.length)).toEqual(Float32Array.from(q, (v) => v * scales[t.name]!));
    }
    const i8 = (scales: string | undefined) =>
      writeSafetensors(
        {
          a: { dtype: "I8", shape: [64, 32], data: new Int8Array(2048) },
          b: { dtype: "F32", shape: [2048], data: new Float32Array(2048) },
        },
        { num_examples: "1", ...(scales === undefined ? {} : { scales }) },
      );
    const refusal = (b: Uint8Array) => refusalOf(() => tensorFileSource(b, layout, global.dataStart, "upload"));
    expect(refusal(i8('{"a":0.5}'))).toBe("accepted");
    expect(refusal(i8(undefined))).toContain('I8 tensors need __metadata__ "scales"');
    expect(refusal(i8('{"a":-1}'))).toContain('I8 tensor "a" needs a finite, non-negative scale');
    expect(refusal(i8('{"a":1e999}'))).toContain('I8 tensor "a" needs a finite, non-negative scale');
    expect(refusal(i8('{"a":1,"b":1}'))).toContain('names "b", which is not an I8 tensor');
    expect(refusal(i8("[1]"))).toContain("is a JSON object");
  });
});
