// The reference inference endpoint as a user calls it: through the official `openai` npm client.
// Echoed prompt log-probs are checked against `fedflare score` on the same text.
import { rmSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { toFloat32 } from "../../src/protocol/dtypes.ts";
import { readSafetensors } from "../../src/protocol/safetensors.ts";
import { referenceHidden } from "../reference/llama-f64.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { runCli } from "../cli/run-cli.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("endpoint");
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const modelDir = writeHfModel(join(root, "tiny"), config, tinyWeights(config, 14));
const TOKEN = "test-token";
let endpoint: RunningEndpoint;
let client: OpenAI;

beforeAll(async () => {
  endpoint = await startEndpoint({
    model: await loadModel(dirSource(modelDir)),
    fingerprint: "tiny-fingerprint",
    name: "tiny",
    port: 0,
    token: TOKEN,
    maxBatch: 4,
    maxWaitMs: 50,
  });
  client = new OpenAI({ baseURL: `${endpoint.url}/v1`, apiKey: TOKEN, maxRetries: 0 });
});
afterAll(async () => {
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

const text = "The quick brown fox jumps over the lazy dog.";

describe("the inference endpoint through the openai client", () => {
  it("lists its model and reports its provider", async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["tiny"]);
    const health = (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
      provider: string;
    };
    expect(health.provider).toBe(endpoint.provider);
  });

  it("echoes the prompt's log-probs as vLLM does (first null) and they equal fedflare score", async () => {
    const r = await client.completions.create({ model: "tiny", prompt: text, max_tokens: 0, echo: true, logprobs: 3 });
    const lp = r.choices[0]!.logprobs!;
    const scored = JSON.parse((await runCli(["score", "--model", modelDir, "--text", text])).stdout) as {
      tokens: number[];
      logprobs: number[];
    };
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.token_logprobs!.length).toBe(scored.tokens.length);
    scored.logprobs.forEach((x, i) => expect(Math.abs(lp.token_logprobs![i + 1]! - x)).toBeLessThan(1e-4));
    expect(Object.keys(lp.top_logprobs![1]!)).toHaveLength(3);
    expect(r.choices[0]!.text).toBe(text);
    expect(r.usage).toMatchObject({ prompt_tokens: scored.tokens.length, completion_tokens: 0 });
  });

  it("batches concurrent scoring requests and answers each with its own prompt", async () => {
    const prompts = ["The dog sleeps.", "Each client trains, the server averages.", "The fox runs away.", "Federated learning."];
    const rs = await Promise.all(
      prompts.map((p) => client.completions.create({ model: "tiny", prompt: p, max_tokens: 0, echo: true, logprobs: 0 })),
    );
    for (const [i, r] of rs.entries()) {
      const single = JSON.parse((await runCli(["score", "--model", modelDir, "--text", prompts[i]!])).stdout) as { logprobs: number[] };
      single.logprobs.forEach((x, t) => expect(Math.abs(r.choices[0]!.logprobs!.token_logprobs![t + 1]! - x)).toBeLessThan(1e-4));
    }
    // The four arrived within the batching window: one forward pass served several of them.
    const health = (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
      largest_batch: number;
    };
    expect(health.largest_batch).toBeGreaterThan(1);
  });

  it("generates greedily like fedflare generate, with token ids as the prompt, and honours stop", async () => {
    const gen = JSON.parse(
      (await runCli(["generate", "--model", modelDir, "--prompt", "The dog", "--max-tokens", "6", "--json"])).stdout,
    ) as { prompt_tokens: number[]; tokens: number[]; text: string };
    const r = await client.completions.create({ model: "tiny", prompt: gen.prompt_tokens, max_tokens: 6, temperature: 0, logprobs: 1 });
    expect(r.choices[0]!.logprobs!.tokens!.length).toBe(6);
    // One token with the echo (how scoring clients ask): taken from the echo's own forward pass, the same token.
    const one = await client.completions.create({
      model: "tiny",
      prompt: gen.prompt_tokens,
      max_tokens: 1,
      temperature: 0,
      echo: true,
      logprobs: 1,
    });
    expect(one.choices[0]!.logprobs!.tokens!.length).toBe(gen.prompt_tokens.length + 1);
    expect(one.choices[0]!.logprobs!.token_logprobs!.at(-1)).toBeCloseTo(r.choices[0]!.logprobs!.token_logprobs![0]!, 4);
    expect(one.usage!.completion_tokens).toBe(1);
    expect(r.usage!.completion_tokens).toBe(6);
    const sampledA = await client.completions.create({ model: "tiny", prompt: "The", max_tokens: 8, temperature: 1.2, seed: 5 });
    const sampledB = await client.completions.create({ model: "tiny", prompt: "The", max_tokens: 8, temperature: 1.2, seed: 5 });
    expect(sampledA.choices[0]!.text).toBe(sampledB.choices[0]!.text);
    const first = r.choices[0]!.text;
    if (first.length > 2) {
      const stopped = await client.completions.create({
        model: "tiny",
        prompt: gen.prompt_tokens,
        max_tokens: 6,
        temperature: 0,
        stop: first.slice(1, 2),
      });
      expect(stopped.choices[0]).toMatchObject({ text: first.slice(0, first.indexOf(first.slice(1, 2))), finish_reason: "stop" });
    }
  });

  it.each([
    ["a wrong token", () => new OpenAI({ baseURL: `${endpoint.url}/v1`, apiKey: "nope", maxRetries: 0 }).models.list(), 401],
    ["another model", () => client.completions.create({ model: "gpt-4", prompt: "x" }), 404],
    ["logprobs above 20", () => client.completions.create({ model: "tiny", prompt: "x", logprobs: 21 }), 400],
    ["n = 2", () => client.completions.create({ model: "tiny", prompt: "x", n: 2 }), 400],
    ["a token id outside the vocabulary", () => client.completions.create({ model: "tiny", prompt: [1, 99999], max_tokens: 1 }), 400],
  ])("refuses %s with its status and an OpenAI error body", async (_, call, status) => {
    await expect(call()).rejects.toMatchObject({ status, error: { message: expect.any(String), type: expect.any(String) } });
  });
});

it("documents its API, the hidden-states extension included, in an OpenAPI document", async () => {
  const doc = (await (await fetch(`${endpoint.url}/openapi.json`)).json()) as {
    paths: Record<string, unknown>;
    components: { schemas: Record<string, { properties: Record<string, unknown> }> };
  };
  expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/models", "/v1/completions", "/v1/hidden-states"]));
  expect(Object.keys(doc.components.schemas.HiddenStatesRequest!.properties)).toEqual(["model", "input_ids", "layer", "dtype"]);
});

describe("hidden states (POST /v1/hidden-states)", () => {
  const post = (body: unknown, token = TOKEN) =>
    fetch(`${endpoint.url}/v1/hidden-states`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const rows = [
    [1, 40, 41, 42, 43],
    [1, 77, 78],
  ];

  it.each([0, 1, 2])("after %i layers equal the float64 reference's, padded rows included up to their length", async (layer) => {
    const res = await post({ model: "tiny", input_ids: rows, layer });
    expect(res.status).toBe(200);
    const file = readSafetensors(new Uint8Array(await res.arrayBuffer()));
    const t = file.tensors.get("hidden_states")!;
    expect(t.shape).toEqual([2, 5, config.hiddenSize]);
    expect(file.metadata).toMatchObject({ layer: String(layer), lengths: "[5,3]" });
    const got = toFloat32("F32", t.data);
    const weights = (await loadModel(dirSource(modelDir))).weights;
    const ref = referenceHidden(
      config,
      weights,
      {
        ids: rows.map((r) => [...r, ...Array(5 - r.length).fill(0)]),
        mask: rows.map((r) => [...r.map(() => 1), ...Array(5 - r.length).fill(0)]),
      },
      layer,
    );
    const H = config.hiddenSize;
    let max = 0;
    rows.forEach((r, b) =>
      r.forEach((_, pos) => {
        for (let k = 0; k < H; k++) max = Math.max(max, Math.abs(got[(b * 5 + pos) * H + k]! - ref[(b * 5 + pos) * H + k]!));
      }),
    );
    expect(max).toBeLessThan(1e-4);
  });

  it("answers in bf16 when asked, and refuses a layer beyond the model", async () => {
    const bf = readSafetensors(
      new Uint8Array(await (await post({ model: "tiny", input_ids: rows, layer: 1, dtype: "bf16" })).arrayBuffer()),
    ).tensors.get("hidden_states")!;
    const f32 = readSafetensors(new Uint8Array(await (await post({ model: "tiny", input_ids: rows, layer: 1 })).arrayBuffer())).tensors.get(
      "hidden_states",
    )!;
    expect(bf.dtype).toBe("BF16");
    const a = toFloat32("BF16", bf.data);
    const b = toFloat32("F32", f32.data);
    b.forEach((x, i) => expect(Math.abs(a[i]! - x)).toBeLessThanOrEqual(Math.abs(x) / 128 + 1e-6));
    const bad = await post({ model: "tiny", input_ids: rows, layer: config.numLayers + 1 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { message: expect.stringMatching(/layer must be in \[0, 2\]/) } });
    expect((await post({ model: "tiny", input_ids: rows, layer: 0 }, "wrong")).status).toBe(401);
  });
});
