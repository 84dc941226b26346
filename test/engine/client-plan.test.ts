// A client's memory plan: what it says a client holds is what a pre-quantized checkpoint stores for those
// tensors, and its WASM heap is what onnxruntime-web measures for the step (a fresh process each time,
// since the heap never shrinks), within the tolerance the fit reaches.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../cli/main.ts";
import { writeQuantizedModel } from "../../cli/quantized-model.ts";
import { PUBLISHED_CONFIGS } from "../../bench/lib/published-configs.ts";
import { clientPlanRefusal, heldTensors, MIB, planStep } from "../../src/engine/client-plan.ts";
import { parseLlamaConfig } from "../../src/engine/config.ts";
import { packedNames } from "../../src/engine/quantized-checkpoint.ts";
import { splitFootprint } from "../../src/fl/methods/lora/server.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { tempDir } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("client-plan");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const smollm = parseLlamaConfig(PUBLISHED_CONFIGS["HuggingFaceTB/SmolLM-135M"]);

describe("the bytes a client holds", () => {
  it.each(["int8", "int4"] as const)("%s: each held tensor's bytes are what the checkpoint stores for it", async (quant) => {
    const config = tinyConfig({ hidden: 64, intermediate: 96, layers: 3, vocab: 300, tied: false });
    const { dir } = await writeQuantizedModel(join(root, quant), config, quant, tinyWeights(config, 3));
    const bytes = readFileSync(join(dir, "model.safetensors"));
    const header = readSafetensorsHeader(new Uint8Array(bytes));
    const stored = (name: string) =>
      [name, ...packedNames(name)]
        .map((n) => header.tensors.get(n))
        .filter((t) => t && !t.dtype.startsWith("I6"))
        .reduce((s, t) => s + (t!.dataOffsets[1] - t!.dataOffsets[0]), 0);
    const held = heldTensors(config, splitFootprint(config, 2), quant);
    // A split client with an untied head holds neither the embedding nor the layers below the cut.
    expect([...held.keys()].some((n) => n === "model.embed_tokens.weight" || n.startsWith("model.layers.1."))).toBe(false);
    for (const [name, b] of held) expect(b, name).toBe(stored(name));
  });
});

describe("the WASM heap of a split-LoRA step", () => {
  it("is predicted within 15% of onnxruntime-web's, measured (SmolLM-135M's shape, one layer above the cut, 64 tokens)", () => {
    const probe = new URL("../../bench/lib/wasm-heap-probe.ts", import.meta.url).pathname;
    const args = { config: PUBLISHED_CONFIGS["HuggingFaceTB/SmolLM-135M"], cut: 29, batch: 1, seq: 64 };
    const out = execFileSync(process.execPath, ["--no-wasm-tier-up", probe, JSON.stringify(args)], { encoding: "utf8" });
    const measured = (JSON.parse(out.trim().split("\n").at(-1)!) as { wasmHeapBytes: number }).wasmHeapBytes;
    const predicted = planStep(smollm, splitFootprint(smollm, 29), { quant: "int8", batch: 1, seq: 64 }).wasmBytes;
    expect(Math.abs(predicted - measured) / measured, `predicted ${predicted / MIB} MiB, measured ${measured / MIB} MiB`).toBeLessThan(
      0.15,
    );
  }, 60_000);
});

describe("fedflare plan and the refusal at creation", () => {
  it("refuses no shipped model under fedflare run's defaults (LoRA, int8, 8 x 64), nor beyond what its fit measured", () => {
    for (const dir of readdirSync("models")) {
      const c = parseLlamaConfig(JSON.parse(readFileSync(join("models", dir, "config.json"), "utf8")));
      const whole = { layers: Array.from({ length: c.numLayers }, (_, i) => i), embeds: true, trains: true };
      for (const seq of [64, 128, 512])
        expect(clientPlanRefusal(c, { local: whole }, { quant: "int8", batch: 8, seq }), `${dir} x ${seq}`).toBeNull();
    }
  });

  it("names the lowest cut whose client fits, and refuses a federation no client could run", async () => {
    const dir = join(root, "smollm");
    // The plan reads only config.json.
    mkdirSync(dir);
    writeFileSync(join(dir, "config.json"), JSON.stringify(PUBLISHED_CONFIGS["HuggingFaceTB/SmolLM-135M"]));
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: string) => lines.push(s);
    try {
      expect(await main(["plan", "--model", dir, "--batch", "1", "--seq", "64"])).toBe(0);
    } finally {
      console.log = log;
    }
    const lowest = lines.find((l) => l.startsWith("lowest cut that fits"));
    expect(lowest).toMatch(/^lowest cut that fits: \d+ \(the client runs layers \d+-29\)$/);
    const cut = Number(/fits: (\d+)/.exec(lowest!)![1]);
    const settings = { quant: "int8" as const, batch: 1, seq: 64 };
    const split = (from: number) => splitFootprint(smollm, from);
    expect(planStep(smollm, split(cut), settings).fits).toBe(true);
    expect(planStep(smollm, split(cut - 1), settings).fits).toBe(false);
    expect(clientPlanRefusal(smollm, { endpoint: split(cut) }, settings)).toBeNull();
    // Outside the fit (here forward-only) a prediction over the limit refuses nothing; weights over it alone do.
    expect(planStep(smollm, { ...split(25), trains: false }, settings).fits).toBe(false);
    expect(clientPlanRefusal(smollm, { local: { ...split(25), trains: false } }, settings)).toBeNull();
    expect(clientPlanRefusal(smollm, { local: { ...split(0), trains: false } }, settings)).toMatch(/no client can run/);
    expect(clientPlanRefusal(smollm, { local: split(0) }, settings)).toMatch(
      /^no client can run this federation inside its 128 MiB \(clientMemoryMiB; local: 30 layers/,
    );
  });
});
