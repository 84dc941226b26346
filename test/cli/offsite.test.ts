import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("cli-offsite");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ heads: 4, kvHeads: 2, layers: 6 });
const weights = tinyWeights(config, 31);
const modelDir = writeHfModel(join(root, "model"), config, weights);
const layerOf = (name: string) => Number(/^model\.layers\.(\d+)\./.exec(name)?.[1] ?? -1);

describe("fedflare offsite", () => {
  it("writes the emulator (only its layers, original names) and the adapter; plugs a trained adapter back by layer index", async () => {
    const out = join(root, "offsite");
    const made = await runCli(["offsite", "emulator", "--model", modelDir, "--bottom", "1", "--top", "1", "--middle", "2", "--out", out]);
    expect(made.code, made.stderr).toBe(0);
    const description = JSON.parse(readFileSync(join(out, "emulator", "offsite.json"), "utf8"));
    expect(description).toEqual({
      method: "offsite",
      base_model: "model",
      bottom: 1,
      top: 1,
      middle: 2,
      adapter_layers: [0, 5],
      emulator_layers: [0, 1, 4, 5],
    });
    expect(JSON.parse(readFileSync(join(out, "adapter", "adapter_config.json"), "utf8"))).toEqual(description);
    const emulator = await loadModel(dirSource(join(out, "emulator")), { layers: description.emulator_layers });
    expect([...new Set([...emulator.weights.keys()].map(layerOf).filter((l) => l >= 0))]).toEqual([0, 1, 4, 5]);
    for (const [n, w] of emulator.weights) expect(w).toEqual(weights.get(n));
    await expect(loadModel(dirSource(join(out, "emulator")))).rejects.toMatchObject({ code: "tensor_missing" });

    const adapterFile = join(out, "adapter", "adapter_model.safetensors");
    const adapter = decodeTensorFile(new Uint8Array(readFileSync(adapterFile)), "adapter");
    expect([...new Set([...adapter.tensors.keys()].map(layerOf))].sort()).toEqual([0, 5]);

    // Untrained, plugged in: the full model again, bit for bit.
    const same = await runCli(["offsite", "plug-in", "--model", modelDir, "--adapter", join(out, "adapter"), "--out", join(root, "same")]);
    expect(same.code, same.stderr).toBe(0);
    for (const [n, w] of (await loadModel(dirSource(join(root, "same")))).weights) expect(w).toEqual(weights.get(n));

    // Trained: exactly the adapter's tensors change.
    const trained = new Map([...adapter.tensors].map(([n, t]) => [n, t.map((x) => x + 0.25)]));
    writeFileSync(adapterFile, encodeTensorFile(trained, adapter.shapes));
    expect(
      (await runCli(["offsite", "plug-in", "--model", modelDir, "--adapter", join(out, "adapter"), "--out", join(root, "plugged")])).code,
    ).toBe(0);
    for (const [n, w] of (await loadModel(dirSource(join(root, "plugged")))).weights) expect(w).toEqual(trained.get(n) ?? weights.get(n));
  });

  it.each([
    [
      "a missing adapter tensor",
      (t: Map<string, Float32Array>, s: Map<string, number[]>) => {
        t.delete("model.layers.5.mlp.down_proj.weight");
        s.delete("model.layers.5.mlp.down_proj.weight");
      },
      /model\.layers\.5\.mlp\.down_proj\.weight.*missing/,
    ],
    [
      "a transposed tensor",
      (_: Map<string, Float32Array>, s: Map<string, number[]>) => void s.set("model.layers.0.mlp.up_proj.weight", [64, 96]),
      /up_proj.*\[64,96\].*expected \[96,64\]/,
    ],
    [
      "a middle layer's tensor",
      (t: Map<string, Float32Array>, s: Map<string, number[]>) => {
        t.set("model.layers.2.input_layernorm.weight", new Float32Array(64));
        s.set("model.layers.2.input_layernorm.weight", [64]);
      },
      /layers\.2\.input_layernorm.*not part/,
    ],
    ["a NaN", (t: Map<string, Float32Array>) => void t.get("model.layers.0.input_layernorm.weight")!.fill(NaN), /non-finite|NaN/],
  ])("plug-in refuses %s", async (_, edit, message) => {
    const out = join(root, `bad-${Math.random().toString(36).slice(2)}`);
    await runCli(["offsite", "emulator", "--model", modelDir, "--bottom", "1", "--top", "1", "--middle", "2", "--out", out]);
    const file = join(out, "adapter", "adapter_model.safetensors");
    const adapter = decodeTensorFile(new Uint8Array(readFileSync(file)), "adapter");
    edit(adapter.tensors, adapter.shapes);
    writeFileSync(file, encodeTensorFile(adapter.tensors, adapter.shapes));
    const r = await runCli(["offsite", "plug-in", "--model", modelDir, "--adapter", join(out, "adapter"), "--out", join(out, "plugged")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  it("distills the emulator's middle on the SOTU corpus when asked: only the kept middle layers differ from the full model", async () => {
    const out = join(root, "distilled");
    const r = await runCli([
      "offsite",
      "emulator",
      "--model",
      modelDir,
      "--bottom",
      "1",
      "--top",
      "1",
      "--middle",
      "2",
      "--out",
      out,
      "--distill-steps",
      "2",
      "--distill-lr",
      "1e-3",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/distilling: step 2\/2 +loss \d+\.\d+ \(distillation \d+\.\d+\)/);
    const emulator = await loadModel(dirSource(join(out, "emulator")), { layers: [0, 1, 4, 5] });
    for (const [n, w] of emulator.weights) {
      if ([1, 4].includes(layerOf(n))) expect(w, n).not.toEqual(weights.get(n));
      else expect(w, n).toEqual(weights.get(n));
    }
  });

  it("refuses an adapter folder without its description, and a split the model cannot hold", async () => {
    const out = join(root, "nodesc");
    await runCli(["offsite", "emulator", "--model", modelDir, "--bottom", "1", "--top", "1", "--middle", "2", "--out", out]);
    writeFileSync(join(out, "adapter", "adapter_config.json"), JSON.stringify({ peft_type: "LORA" }));
    const r = await runCli(["offsite", "plug-in", "--model", modelDir, "--adapter", join(out, "adapter"), "--out", join(out, "x")]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/adapter_invalid.*not an offsite-tuning adapter/)]);
    const split = await runCli([
      "offsite",
      "emulator",
      "--model",
      modelDir,
      "--bottom",
      "4",
      "--top",
      "4",
      "--middle",
      "0",
      "--out",
      join(root, "x"),
    ]);
    expect([split.code, split.stderr]).toEqual([1, expect.stringMatching(/exceeds the model's 6 layers/)]);
  });
});
