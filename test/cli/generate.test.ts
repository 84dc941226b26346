import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { referenceLogits } from "../reference/llama-f64.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("cli-generate");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 33);
const modelDir = writeHfModel(join(root, "model"), config, weights);

interface Generated {
  prompt_tokens: number[];
  tokens: number[];
  text: string;
  finish_reason: string;
}

describe("fedflare generate", () => {
  it("greedy decoding with the KV cache picks the reference model's argmax at every step", async () => {
    const r = await runCli(["generate", "--model", modelDir, "--prompt", "The dog", "--max-tokens", "6", "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Generated;
    expect(out.tokens).toHaveLength(6);
    const seq = [...out.prompt_tokens];
    for (const t of out.tokens) {
      const logits = referenceLogits(config, weights, { ids: [seq] });
      const last = logits.subarray((seq.length - 1) * config.vocabSize);
      expect(t).toBe(last.indexOf(Math.max(...last)));
      seq.push(t);
    }
  });

  it("samples reproducibly for a seed and differently for another", async () => {
    const args = (seed: string) => [
      "generate",
      "--model",
      modelDir,
      "--prompt",
      "The",
      "--max-tokens",
      "12",
      "--temperature",
      "1.5",
      "--top-p",
      "0.95",
      "--seed",
      seed,
      "--json",
    ];
    const [a, b, c] = await Promise.all([runCli(args("1")), runCli(args("1")), runCli(args("2"))]);
    const ta = (JSON.parse(a.stdout) as Generated).tokens;
    expect((JSON.parse(b.stdout) as Generated).tokens).toEqual(ta);
    expect((JSON.parse(c.stdout) as Generated).tokens).not.toEqual(ta);
  });

  it("refuses a bad temperature", async () => {
    const r = await runCli(["generate", "--model", modelDir, "--prompt", "x", "--temperature=-1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--temperature must be/);
  });
});
