import { rmSync, writeFileSync, readFileSync } from "node:fs";
import { floatOf } from "../../src/engine/quantize.ts";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel, type ModelSource } from "../../src/engine/model-files.ts";
import { expectedTensors } from "../../src/engine/llama/names.ts";
import { writeSafetensors, type TensorInput } from "../../src/protocol/safetensors.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("model-files");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 9);
const shapes = expectedTensors(config);
let n = 0;
const write = (opts: Parameters<typeof writeHfModel>[3] = {}, w: ReadonlyMap<string, Float32Array> = weights) =>
  writeHfModel(join(root, `m${n++}`), config, w, opts);
/** A model whose model.safetensors holds the F32 tensors `edit` leaves in the record. */
const withTensors = (edit: (t: Record<string, TensorInput>) => void) => {
  const d = write();
  const t: Record<string, TensorInput> = Object.fromEntries(
    [...weights].map(([k, w]) => [k, { dtype: "F32", shape: shapes.get(k)!, data: w }]),
  );
  edit(t);
  writeFileSync(join(d, "model.safetensors"), writeSafetensors(t));
  return d;
};

describe("loadModel", () => {
  it.each([
    ["F32, one file", { dtype: "F32" }, 0],
    ["F16, one file", { dtype: "F16" }, 1e-3],
    ["BF16, three shards", { dtype: "BF16", shards: 3 }, 1e-2],
  ] as const)("loads %s with its config and tokenizer", async (_, opts, tol) => {
    const m = await loadModel(dirSource(write(opts)));
    expect(m.config).toEqual(config);
    for (const [name, w] of weights) {
      const got = floatOf(m.weights.get(name)!);
      expect(maxAbsDiff(got, w)).toBeLessThanOrEqual(tol * Math.max(...w.map(Math.abs)));
    }
    const ids = m.tokenizer.encode("The quick brown fox");
    expect(ids[0]).toBe(1); // BOS from the tokenizer's post-processor
    expect(m.tokenizer.decode(ids, { skipSpecialTokens: true })).toBe("The quick brown fox");
  });

  const broken: [string, () => string, string, RegExp][] = [
    [
      "no config.json",
      () => {
        const d = write();
        rmSync(join(d, "config.json"));
        return d;
      },
      "file_missing",
      /config\.json is missing/,
    ],
    [
      "config.json not JSON",
      () => {
        const d = write();
        writeFileSync(join(d, "config.json"), "{");
        return d;
      },
      "config_invalid",
      /not valid JSON/,
    ],
    [
      "no weights file",
      () => {
        const d = write();
        rmSync(join(d, "model.safetensors"));
        return d;
      },
      "file_missing",
      /model\.safetensors is missing/,
    ],
    [
      "truncated safetensors",
      () => {
        const d = write();
        const f = join(d, "model.safetensors");
        writeFileSync(f, readFileSync(f).subarray(0, 1000));
        return d;
      },
      "weights_invalid",
      /model\.safetensors/,
    ],
    ["a missing tensor", () => withTensors((t) => delete t["model.layers.1.mlp.up_proj.weight"]), "tensor_missing", /up_proj/],
    [
      "a tensor the config has no place for",
      () => withTensors((t) => (t["model.layers.2.mlp.up_proj.weight"] = { dtype: "F32", shape: [2, 2], data: new Float32Array(4) })),
      "tensor_unexpected",
      /layers\.2/,
    ],
    [
      "a misshapen tensor",
      () => withTensors((t) => (t["model.layers.0.self_attn.k_proj.weight"]!.shape = [64, 32])),
      "tensor_shape",
      /k_proj.*\[64,32\].*\[32,64\]/,
    ],
    [
      "integer weights",
      () => withTensors((t) => (t["model.embed_tokens.weight"] = { dtype: "I32", shape: [300, 64], data: new Int32Array(300 * 64) })),
      "tensor_dtype",
      /I32/,
    ],
    [
      "a shard the index names but is missing",
      () => {
        const d = write({ shards: 2 });
        rmSync(join(d, "model-00002-of-00002.safetensors"));
        return d;
      },
      "file_missing",
      /00002/,
    ],
    [
      "an index with a path outside the folder",
      () => {
        const d = write({ shards: 2 });
        writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../x.safetensors" } }));
        return d;
      },
      "weights_invalid",
      /weight_map/,
    ],
    [
      "no tokenizer.json",
      () => {
        const d = write();
        rmSync(join(d, "tokenizer.json"));
        return d;
      },
      "file_missing",
      /tokenizer\.json/,
    ],
    [
      "a tokenizer.json without a model",
      () => {
        const d = write();
        writeFileSync(join(d, "tokenizer.json"), "{}");
        return d;
      },
      "tokenizer_invalid",
      /model/,
    ],
  ];
  it.each(broken)("refuses %s with a typed error", async (_, make, code, message) => {
    await expect(loadModel(dirSource(make()))).rejects.toMatchObject({ name: "ModelError", code, message: expect.stringMatching(message) });
  });
});

describe("loadModel with a subset of layers", () => {
  const deep = tinyConfig({ heads: 4, kvHeads: 2, layers: 4 });
  const deepWeights = tinyWeights(deep, 10);
  const writeDeep = (w: ReadonlyMap<string, Float32Array>, opts: Parameters<typeof writeHfModel>[3] = {}) =>
    writeHfModel(join(root, `m${n++}`), deep, w, opts);
  /** A source over a folder that records which files were read. */
  const recording = (dir: string) => {
    const reads: string[] = [];
    const inner = dirSource(dir);
    return {
      reads,
      source: {
        location: inner.location,
        read: (name: string) => {
          reads.push(name);
          return inner.read(name);
        },
      },
    };
  };
  const layerNames = (w: ReadonlyMap<string, unknown>) =>
    [...new Set([...w.keys()].flatMap((k) => /^model\.layers\.(\d+)\./.exec(k)?.[1] ?? []))].map(Number).sort();

  it("decodes only the layers asked for, plus the embedding, final norm and head, bit for bit", async () => {
    const m = await loadModel(dirSource(writeDeep(deepWeights)), { layers: [2, 3] });
    expect(layerNames(m.weights)).toEqual([2, 3]);
    expect([...m.weights.keys()].sort()).toEqual([...expectedTensors(deep, [2, 3]).keys()].sort());
    for (const [name, w] of m.weights) expect(w).toEqual(deepWeights.get(name));
  });

  it("reads only the shards that hold the layers asked for", async () => {
    const dir = writeDeep(deepWeights, { shards: 4 });
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
    const needed = new Set([...expectedTensors(deep, [3]).keys()].map((k) => index.weight_map[k]));
    const { reads, source } = recording(dir);
    const m = await loadModel(source, { layers: [3] });
    expect(layerNames(m.weights)).toEqual([3]);
    const shardsRead = reads.filter((f) => /^model-\d+/.test(f));
    expect(new Set(shardsRead)).toEqual(needed);
    expect(needed.size).toBeLessThan(4);
  });

  it("loads an emulator-style folder holding only some layers under their original indices, and refuses a full load of it", async () => {
    const kept = new Map([...deepWeights].filter(([k]) => !/^model\.layers\.[12]\./.test(k)));
    const dir = writeDeep(kept);
    const m = await loadModel(dirSource(dir), { layers: [0, 3] });
    expect(layerNames(m.weights)).toEqual([0, 3]);
    await expect(loadModel(dirSource(dir))).rejects.toMatchObject({
      code: "tensor_missing",
      message: expect.stringMatching(/layers\.1\./),
    });
    await expect(loadModel(dirSource(dir), { layers: [0, 2] })).rejects.toMatchObject({
      code: "tensor_missing",
      message: expect.stringMatching(/layers\.2\./),
    });
  });

  it("still checks the shapes of the layers it does not decode, and refuses layers the model lacks", async () => {
    const bad = writeDeep(deepWeights);
    const deepShapes = expectedTensors(deep);
    const t: Record<string, TensorInput> = Object.fromEntries(
      [...deepWeights].map(([k, w]) => [k, { dtype: "F32", shape: deepShapes.get(k)!, data: w }]),
    );
    t["model.layers.0.mlp.up_proj.weight"] = { dtype: "F32", shape: [7], data: new Float32Array(7) };
    writeFileSync(join(bad, "model.safetensors"), writeSafetensors(t));
    await expect(loadModel(dirSource(bad), { layers: [3] })).rejects.toMatchObject({
      code: "tensor_shape",
      message: expect.stringMatching(/layers\.0\.mlp\.up_proj/),
    });
    await expect(loadModel(dirSource(writeDeep(deepWeights)), { layers: [4] })).rejects.toMatchObject({
      code: "input_invalid",
      message: expect.stringMatching(/layer 4 .*4 layers/),
    });
  });
});

describe("loadModel by range reads", () => {
  const deep = tinyConfig({ heads: 4, kvHeads: 2, layers: 4 });
  const deepWeights = tinyWeights(deep, 11);
  /** The folder's source, counting the bytes its range reads return; `ranged: false` drops readRange (whole files). */
  const counting = (dir: string, ranged = true) => {
    const inner = dirSource(dir);
    const seen = { bytes: 0, wholeFiles: [] as string[] };
    const source: ModelSource = {
      location: inner.location,
      read: async (name) => {
        if (name.endsWith(".safetensors")) seen.wholeFiles.push(name);
        return inner.read(name);
      },
      ...(ranged
        ? {
            readRange: async (name: string, offset: number, length: number) => {
              const got = await inner.readRange!(name, offset, length);
              seen.bytes += got?.bytes.byteLength ?? 0;
              return got;
            },
          }
        : {}),
    };
    return { seen, source };
  };

  it("reads the header and then only the tensors it keeps: the same weights as a whole-file load", async () => {
    const dir = writeHfModel(join(root, `m${n++}`), deep, deepWeights);
    const fileBytes = readFileSync(join(dir, "model.safetensors")).byteLength;
    const whole = counting(dir, false);
    const wholeModel = await loadModel(whole.source, { layers: [3] });
    expect(whole.seen.wholeFiles).toEqual(["model.safetensors"]);
    const ranged = counting(dir);
    const rangedModel = await loadModel(ranged.source, { layers: [3] });
    expect(ranged.seen.wholeFiles).toEqual([]);
    for (const [name, w] of wholeModel.weights) expect(rangedModel.weights.get(name)).toEqual(w);
    // The kept tensors' float32 bytes, plus the header read twice (its length, then itself): nothing of layers 0-2.
    const kept = [...expectedTensors(deep, [3]).values()].reduce((s, shape) => s + 4 * shape.reduce((a, b) => a * b, 1), 0);
    const headerBytes = 8 + Number(readFileSync(join(dir, "model.safetensors")).readBigUInt64LE(0));
    expect(ranged.seen.bytes).toBe(kept + 8 + headerBytes);
    expect(ranged.seen.bytes).toBeLessThan(fileBytes);
  });

  it("refuses a checkpoint whose data is cut short, naming the file", async () => {
    const dir = writeHfModel(join(root, `m${n++}`), deep, deepWeights);
    const file = join(dir, "model.safetensors");
    writeFileSync(file, readFileSync(file).subarray(0, -4));
    await expect(loadModel(dirSource(dir), { layers: [3] })).rejects.toMatchObject({
      code: "weights_invalid",
      message: expect.stringMatching(/model\.safetensors: the data buffer is \d+ bytes but its tensors end at \d+ \(out_of_bounds\)/),
    });
  });
});
