import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loraScaling } from "../../src/engine/lora/peft.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { tempDir, tinyTokenizerJson, writeAdapterDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyLora, tinyWeights } from "../fixtures/tiny-llama.ts";
import { referenceLogprobs } from "../reference/llama-f64.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("cli-score");
afterAll(() => rmSync(root, { recursive: true, force: true }));

// GQA (4 query heads over 2 kv heads) and an untied head.
const config = tinyConfig({ heads: 4, kvHeads: 2, tied: false, layers: 2 });
const weights = tinyWeights(config, 21);
const modelDir = writeHfModel(join(root, "model"), config, weights);
const text = "The quick brown fox jumps over the lazy dog.";
const tokenizer = loadTokenizer(tinyTokenizerJson(config.vocabSize));

interface Scored {
  tokens: number[];
  logprobs: number[];
  mean_nll: number;
}

describe("fedflare score", () => {
  it("prints the tokenizer's ids and per-token log-probs equal to the float64 reference (1e-4)", async () => {
    const { code, stdout, stderr } = await runCli(["score", "--model", modelDir, "--text", text]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as Scored;
    expect(Object.keys(out)).toEqual(["tokens", "logprobs", "mean_nll"]);
    expect(out.tokens).toEqual(tokenizer.encode(text));
    expect(out.tokens[0]).toBe(1);
    const ref = referenceLogprobs(config, weights, out.tokens);
    expect(out.logprobs).toHaveLength(out.tokens.length - 1);
    out.logprobs.forEach((lp, i) => expect(Math.abs(lp - ref[i]!)).toBeLessThan(1e-4));
    expect(out.mean_nll).toBeCloseTo(-ref.reduce((a, b) => a + b, 0) / ref.length, 4);
  });

  it.each([
    ["LoRA r=4 alpha=8 on q,v", 4, 8, false, ["q_proj", "v_proj"]],
    [
      "rsLoRA r=8 alpha=16 on all seven modules",
      8,
      16,
      true,
      ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ],
  ] as const)("with a PEFT adapter (%s) agrees with the reference that adds scaling * B A", async (_, r, alpha, useRslora, modules) => {
    const adapterConfig = { r, alpha, targetModules: [...modules], dropout: 0, useRslora, baseModel: modelDir };
    const pairs = tinyLora(config, [...modules], r, alpha, useRslora);
    for (const p of pairs.values()) expect(p.scaling).toBe(loraScaling(adapterConfig));
    const adapterDir = writeAdapterDir(join(root, `adapter-${r}`), { config: adapterConfig, pairs });
    const withAdapter = JSON.parse(
      (await runCli(["score", "--model", modelDir, "--adapter", adapterDir, "--text", text])).stdout,
    ) as Scored;
    const ref = referenceLogprobs(config, weights, withAdapter.tokens, pairs);
    withAdapter.logprobs.forEach((lp, i) => expect(Math.abs(lp - ref[i]!)).toBeLessThan(1e-4));
    // The adapter changes the scores: a run that ignored it would fail the comparison above.
    const base = referenceLogprobs(config, weights, withAdapter.tokens);
    expect(Math.max(...base.map((b, i) => Math.abs(b - ref[i]!)))).toBeGreaterThan(0.01);
  });

  it("with rank_pattern and alpha_pattern (a rank and an alpha per module), agrees with the reference", async () => {
    // r 4, alpha 8 by default; layer 0's q_proj rank 2; every v_proj rank 6; every q_proj alpha 3.
    const adapterConfig = {
      r: 4,
      alpha: 8,
      targetModules: ["q_proj" as const, "v_proj" as const],
      dropout: 0,
      useRslora: false,
      baseModel: modelDir,
      rankPattern: { "layers.0.self_attn.q_proj": 2, v_proj: 6 },
      alphaPattern: { q_proj: 3 },
    };
    const expected: Record<string, [number, number]> = {
      "model.layers.0.self_attn.q_proj": [2, 3],
      "model.layers.1.self_attn.q_proj": [4, 3],
      "model.layers.0.self_attn.v_proj": [6, 8],
      "model.layers.1.self_attn.v_proj": [6, 8],
    };
    const pairs = new Map(
      Object.entries(expected).map(([name, [r, alpha]], i) => {
        const module = name.endsWith("q_proj") ? "q_proj" : "v_proj";
        const one = tinyLora(config, [module], r, alpha, false, 30 + i).get(name)!;
        return [name, one] as const;
      }),
    );
    const adapterDir = writeAdapterDir(join(root, "adapter-patterns"), { config: adapterConfig, pairs });
    const written = JSON.parse(readFileSync(join(adapterDir, "adapter_config.json"), "utf8"));
    expect([written.rank_pattern, written.alpha_pattern]).toEqual([adapterConfig.rankPattern, adapterConfig.alphaPattern]);
    const scored = JSON.parse((await runCli(["score", "--model", modelDir, "--adapter", adapterDir, "--text", text])).stdout) as Scored;
    const ref = referenceLogprobs(config, weights, scored.tokens, pairs);
    scored.logprobs.forEach((lp, i) => expect(Math.abs(lp - ref[i]!)).toBeLessThan(1e-4));
    // Read with the config's one rank and alpha instead, the scores would differ: each pattern matters.
    const uniform = new Map([...pairs].map(([name, p]) => [name, { ...p, scaling: 8 / p.r }]));
    const wrong = referenceLogprobs(config, weights, scored.tokens, uniform);
    expect(Math.max(...wrong.map((w, i) => Math.abs(w - ref[i]!)))).toBeGreaterThan(0.01);
  });

  it("gives the same scores on ort-web", async () => {
    const [node, web] = await Promise.all([
      runCli(["score", "--model", modelDir, "--text", text]),
      runCli(["score", "--model", modelDir, "--text", text, "--runtime", "ort-web"]),
    ]);
    const a = JSON.parse(node.stdout) as Scored;
    const b = JSON.parse(web.stdout) as Scored;
    a.logprobs.forEach((lp, i) => expect(Math.abs(lp - b.logprobs[i]!)).toBeLessThan(1e-4));
  });

  it.each([
    [["score", "--text", "hi"], 2, /--model DIR is required/],
    [["score", "--model", modelDir], 2, /--text is required/],
    [["score", "--model", modelDir, "--text", "hi", "--bogus"], 2, /bogus/],
    [["score", "--model", modelDir, "--text", "hi", "--runtime", "tfjs"], 2, /--runtime must be/],
    [["score", "--model", join(root, "nowhere"), "--text", "hi"], 1, /\[file_missing\].*config\.json is missing/],
    [["score", "--model", modelDir, "--text", ""], 1, /\[input_invalid\].*at least 2 tokens/],
    [["frobnicate"], 2, /unknown command "frobnicate"/],
  ])("fails clearly on %j", async (args, code, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message);
  });
});
