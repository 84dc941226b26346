import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadPeftAdapter } from "../../src/engine/lora/peft.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("cli-train");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const modelDir = writeHfModel(join(root, "model"), config, tinyWeights(config, 3));
// A template the base model does not know and an adapter can learn: the completion repeats the animal.
const animals = ["fox", "dog", "sun", "server", "client", "worker", "model", "rocket"];
const records = Array.from({ length: 60 }, (_, i) => ({
  prompt: `The ${animals[i % 8]} trains.`,
  completion: ` The ${animals[i % 8]} averages.`,
}));
const data = join(root, "data.jsonl");
writeFileSync(data, `${records.map((r) => JSON.stringify(r)).join("\n")}\n`);

interface Summary {
  heldout_loss_before: number;
  heldout_loss_after: number;
}

describe("fedflare train", () => {
  it("trains a PEFT LoRA adapter that lowers the held-out loss, and score --adapter shows it", async () => {
    const out = join(root, "adapter");
    const r = await runCli([
      "train",
      "--model",
      modelDir,
      "--data",
      data,
      "--out",
      out,
      "--steps",
      "40",
      "--batch",
      "6",
      "--lr",
      "1e-2",
      "--r",
      "4",
      "--targets",
      "q_proj,v_proj,o_proj",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as Summary;
    expect(summary.heldout_loss_after).toBeLessThan(summary.heldout_loss_before * 0.8);
    expect(existsSync(join(out, "adapter_config.json"))).toBe(true);
    const adapter = await loadPeftAdapter(dirSource(out), config);
    expect(adapter.config).toMatchObject({ r: 4, alpha: 16, targetModules: ["o_proj", "q_proj", "v_proj"] });

    // A held-out record (every 10th): its completion is scored better with the adapter.
    const held = records[9]!;
    const text = held.prompt + held.completion;
    const [base, tuned] = await Promise.all([
      runCli(["score", "--model", modelDir, "--text", text]),
      runCli(["score", "--model", modelDir, "--adapter", out, "--text", text]),
    ]);
    expect((JSON.parse(tuned.stdout) as { mean_nll: number }).mean_nll).toBeLessThan(
      (JSON.parse(base.stdout) as { mean_nll: number }).mean_nll,
    );
  });

  it.each([
    ['{"text": 3}', /data\.jsonl:1: expected \{"text": string\}/],
    ['{"prompt": "a"}\nnot json', /data\.jsonl:1/],
    ['{"text": "ok"}\n{oops', /data\.jsonl:2: not valid JSON/],
  ])("refuses a malformed JSONL file (%j) naming the line", async (content, message) => {
    const bad = join(root, "data.jsonl".replace("data", `bad${Math.random().toString(36).slice(2)}`));
    writeFileSync(bad, content);
    const r = await runCli(["train", "--model", modelDir, "--data", bad, "--out", join(root, "x")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[jsonl_invalid\]/);
    expect(r.stderr.replace(/bad[a-z0-9]+/, "data")).toMatch(message);
  });

  it("refuses a dataset too small to hold out a record", async () => {
    const small = join(root, "small.jsonl");
    writeFileSync(small, '{"text": "one"}\n{"text": "two"}\n');
    const r = await runCli(["train", "--model", modelDir, "--data", small, "--out", join(root, "y")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[dataset_too_small\]/);
  });
});
