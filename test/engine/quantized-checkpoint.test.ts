import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../cli/main.ts";
import { dirSource } from "../../cli/model-dir.ts";
import { writeQuantizedModel } from "../../cli/quantized-model.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { EMBED, LM_HEAD, expectedTensors } from "../../src/engine/llama/names.ts";
import { loadModel, type ModelSource } from "../../src/engine/model-files.ts";
import { type QuantWeight, quantizeInt4, quantizeInt8 } from "../../src/engine/quantize.ts";
import { packWeight, parseQuantizationConfig } from "../../src/engine/quantized-checkpoint.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { readSafetensors, type TensorInput, writeSafetensors } from "../../src/protocol/safetensors.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("quantized");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ hidden: 64, intermediate: 96, layers: 3, vocab: 300 });
const weights = tinyWeights(config, 5);
const shapes = expectedTensors(config);
const floatDir = writeHfModel(join(root, "float"), config, weights);
const quantized = async (mode: "int8" | "int4", dir = join(root, mode)) =>
  (await writeQuantizedModel(dir, config, mode, weights, { tokenizerFrom: floatDir })).dir;

const words = (data: ArrayBufferView) => [...new Uint32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))];

describe("compressed-tensors pack-quantized layout", () => {
  it("packs value j of a word into bits 4j (int4) or 8j (int8), offset to unsigned", () => {
    // Row 1 starts -8..-1, row 2 starts 0..7 (the rest 0): unsigned 0..7 and 8..15, value j in nibble j.
    const q = [...[-8, -7, -6, -5, -4, -3, -2, -1], ...Array(24).fill(0), ...[0, 1, 2, 3, 4, 5, 6, 7], ...Array(24).fill(0)];
    const stored: QuantWeight = { kind: "int4", shape: [2, 32], packed: new Uint8Array(32), scale: new Float32Array(2) };
    q.forEach((v, i) => {
      stored.packed[i >> 1]! |= (v & 0xf) << ((i & 1) * 4);
    });
    const parts = packWeight("m.weight", stored);
    const [[packedName, packed], [scaleName, scale], [shapeName, shape]] = [parts[0]!, parts[1]!, parts[2]!];
    expect([packedName, scaleName, shapeName]).toEqual(["m.weight_packed", "m.weight_scale", "m.weight_shape"]);
    expect(packed!.shape).toEqual([2, 4]);
    expect(words(packed!.data)).toEqual([0x76543210, 0x88888888, 0x88888888, 0x88888888, 0xfedcba98, 0x88888888, 0x88888888, 0x88888888]);
    expect(scale!.shape).toEqual([2, 1]);
    expect([...(shape!.data as BigInt64Array)]).toEqual([2n, 32n]);
    const int8: QuantWeight = { kind: "int8", shape: [1, 4], q: Int8Array.from([-1, 0, 1, 127]), scale: Float32Array.of(0.5) };
    const [[, p8], [, s8]] = packWeight("n.weight", int8) as [[string, TensorInput], [string, TensorInput]];
    expect(words(p8!.data)).toEqual([0xff81807f]);
    expect(s8!.shape).toEqual([1, 1]);
  });

  it("reads config.json's quantization_config and refuses other layouts by field", () => {
    const written = JSON.parse(readFileSync(join(floatDir, "config.json"), "utf8"));
    expect(written.quantization_config).toBeUndefined();
    expect(() => parseQuantizationConfig({ quant_method: "gptq", bits: 4 })).toThrow(/quantization_config\.quant_method.*pack-quantized/);
    expect(() =>
      parseQuantizationConfig({
        quant_method: "compressed-tensors",
        format: "pack-quantized",
        config_groups: { g: { targets: ["Linear"], weights: { num_bits: 4, type: "int", symmetric: false } } },
      }),
    ).toThrow(/symmetric/);
  });
});

describe("fedflare quantize and loading a pre-quantized checkpoint", () => {
  it.each(["int8", "int4"] as const)(
    "%s: keeps every matrix as stored, never as float32, and scores as the float model quantized in the graph",
    async (mode) => {
      const dir = await quantized(mode);
      const m = await loadModel(dirSource(dir));
      expect(m.config.quantization).toBe(mode);
      for (const [name, w] of weights) {
        const got = m.weights.get(name)!;
        if (shapes.get(name)!.length === 1) {
          expect(got).toEqual(w);
          continue;
        }
        const [rows, cols] = shapes.get(name) as [number, number];
        const want = mode === "int4" && name !== EMBED && name !== LM_HEAD ? quantizeInt4(w, rows, cols) : quantizeInt8(w, rows, cols);
        expect(got).toEqual(want);
      }
      const ids = [[1, 5, 9, 200, 17, 3]];
      const float = await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "forward", quant: mode });
      const pre = await ForwardModel.create(ortNodeRuntime(), m.config, m.weights, { kind: "forward" });
      expect((await pre.run({ ids })).logits).toEqual((await float.run({ ids })).logits);
      await Promise.all([float.release(), pre.release()]);
    },
  );

  it("the command writes the checkpoint and refuses one already quantized", async () => {
    const out = join(root, "cli-int4");
    expect(await main(["quantize", "--model", floatDir, "--quant", "int4", "--out", out])).toBe(0);
    const m = await loadModel(dirSource(out));
    expect(m.config.quantization).toBe("int4");
    expect(m.tokenizer.encode("the fox")).toEqual((await loadModel(dirSource(floatDir))).tokenizer.encode("the fox"));
    expect(await main(["quantize", "--model", out, "--quant", "int8", "--out", join(root, "again")])).toBe(2);
    expect(await main(["quantize", "--model", floatDir, "--quant", "int3", "--out", join(root, "x")])).toBe(2);
  });

  it("a partial load reads the header and only the kept layers' bytes", async () => {
    const dir = await quantized("int8", join(root, "ranges"));
    const file = readFileSync(join(dir, "model.safetensors"));
    const inner = dirSource(dir);
    let read = 0;
    const counting: ModelSource = {
      location: dir,
      read: inner.read.bind(inner),
      async readRange(name, offset, length) {
        const got = await inner.readRange!(name, offset, length);
        if (name === "model.safetensors") read += got?.bytes.byteLength ?? 0;
        return got;
      },
    };
    const m = await loadModel(counting, { layers: [2] });
    expect([...m.weights.keys()].some((n) => n.startsWith("model.layers.0."))).toBe(false);
    const { tensors } = readSafetensors(new Uint8Array(file));
    const kept = [...tensors].filter(([n]) => !n.startsWith("model.layers.") || n.startsWith("model.layers.2."));
    const keptBytes = kept.reduce((s, [, t]) => s + t.data.byteLength, 0);
    const headerBytes = file.byteLength - [...tensors.values()].reduce((s, t) => s + t.data.byteLength, 0);
    expect(read).toBe(8 + headerBytes + keptBytes);
  });

  it("refuses stored tensors that disagree with config.json, naming them", async () => {
    const dir = await quantized("int4", join(root, "bad"));
    const path = join(dir, "model.safetensors");
    const { tensors } = readSafetensors(new Uint8Array(readFileSync(path)));
    const rewrite = (edit: (t: Map<string, { dtype: "F32" | "I32" | "I64"; shape: number[]; data: ArrayBufferView }>) => void) => {
      const t = new Map([...tensors].map(([n, x]) => [n, { dtype: x.dtype as "F32", shape: x.shape, data: x.data.slice() }]));
      edit(t);
      writeFileSync(path, writeSafetensors(t as never));
    };
    const q = "model.layers.1.mlp.down_proj.weight";
    rewrite((t) => t.delete(`${q}_scale`));
    await expect(loadModel(dirSource(dir))).rejects.toThrow(`"${q}" is stored quantized but ${q}_scale is missing`);
    rewrite((t) => t.set(`${q}_scale`, { dtype: "F32", shape: [64, 1], data: new Float32Array(64) }));
    await expect(loadModel(dirSource(dir))).rejects.toThrow(/scale of shape \[64,3\]/);
    rewrite((t) => t.set(`${q}_shape`, { dtype: "I64", shape: [2], data: BigInt64Array.of(96n, 64n) }));
    await expect(loadModel(dirSource(dir))).rejects.toThrow(`says [96,64] but config.json implies [64,96]`);
  });
});
