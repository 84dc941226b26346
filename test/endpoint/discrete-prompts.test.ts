// Discrete prompt learning against an OpenAI-compatible /v1/completions (our endpoint, reached through
// the `openai` client): the echoed log-probs give the local model's label scores, rows are batched into
// one request, the budget is kept, and a learning round through the API equals one scored locally.
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model-files.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { labelScores } from "../../src/engine/train/evaluate.ts";
import { FlError } from "../../src/fl/errors.ts";
import { completionsRowScorer, noUsage } from "../../src/fl/methods/discrete/completions-api.ts";
import {
  discreteItems,
  discreteSteps,
  localRowScorer,
  promptAccuracy,
  promptScores,
  promptTokens,
  startDiscrete,
  type DiscreteOptions,
} from "../../src/fl/methods/discrete/round.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("discrete");
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const modelDir = writeHfModel(join(root, "tiny"), config, tinyWeights(config, 31));
const TOKEN = "discrete-token";
const labels = ["fox", "dog"];
const phrases = ["quick", "lazy", "sun", "server", "clients"];
const items = Array.from({ length: 12 }, (_, i) => ({
  prompt: `The ${["quick brown", "lazy", "sleepy", "fast"][i % 4]} animal is a`,
  label: labels[i % 2]!,
}));
let endpoint: RunningEndpoint;
let model: LoadedModel;
let forward: ForwardModel;
const api = () => ({ baseURL: `${endpoint.url}/v1`, apiKey: TOKEN, model: "tiny" });

beforeAll(async () => {
  model = await loadModel(dirSource(modelDir));
  endpoint = await startEndpoint({ model, fingerprint: "discrete-fp", name: "tiny", port: 0, token: TOKEN, maxBatch: 16, maxWaitMs: 20 });
  forward = await ForwardModel.create(ortNodeRuntime(1), model.config, model.weights, { kind: "forward", nll: true });
});
afterAll(async () => {
  await forward?.release();
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("discrete prompts through an OpenAI-compatible completions API", () => {
  it("scores label words by echoed log-probs: the local model's scores, rows batched in one request", async () => {
    const t = promptTokens(model.tokenizer, phrases, labels);
    const xs = discreteItems(model.tokenizer, items, labels);
    const usage = noUsage();
    const remote = await promptScores(completionsRowScorer(api()), t, [1, 3], xs, 32, usage);
    const local = await promptScores(localRowScorer(forward), t, [1, 3], xs, 32);
    remote.flat().forEach((x, i) => expect(x).toBeCloseTo(local.flat()[i]!, 4));
    // Without a prompt the rows are the plain prompts: the engine's labelScores.
    const plain = await promptScores(completionsRowScorer(api()), t, null, xs, 32);
    const reference = await labelScores(
      forward,
      items.map((x) => model.tokenizer.encode(x.prompt)),
      t.labels,
      { maxTokens: 32 },
    );
    plain.flat().forEach((x, i) => expect(x).toBeCloseTo(reference.flat()[i]!, 4));
    // 12 items x 2 labels = 24 rows, one request; the endpoint ran them as batches, not one by one.
    expect(usage).toMatchObject({ requests: 1, rows: 24 });
    expect(usage.promptTokens).toBeGreaterThan(24 * 8);
    const health = (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
      largest_batch: number;
    };
    expect(health.largest_batch).toBeGreaterThan(1);
    // A chosen prompt changes the scores (the phrases are really prepended).
    expect(remote.flat().some((x, i) => Math.abs(x - plain.flat()[i]!) > 1e-3)).toBe(true);
  });

  it("the suffix placement puts the phrases between the example and its label words", async () => {
    const t = promptTokens(model.tokenizer, phrases, labels, "suffix");
    const xs = discreteItems(model.tokenizer, items, labels);
    const remote = await promptScores(completionsRowScorer(api()), t, [1, 3], xs, 32);
    const bare = (s: string) => model.tokenizer.encode(s, { addSpecialTokens: false });
    const byHand = items.map((x) => [...model.tokenizer.encode(x.prompt), ...bare(` ${phrases[1]}`), ...bare(` ${phrases[3]}`)]);
    const reference = await labelScores(forward, byHand, t.labels, { maxTokens: 32 });
    remote.flat().forEach((x, i) => expect(x).toBeCloseTo(reference.flat()[i]!, 4));
    const prefixed = await promptScores(localRowScorer(forward), promptTokens(model.tokenizer, phrases, labels), [1, 3], xs, 32);
    expect(remote.flat().some((x, i) => Math.abs(x - prefixed.flat()[i]!) > 1e-3)).toBe(true);
  });

  it("a round of policy-gradient steps through the API equals the same round scored locally, and keeps its query budget", async () => {
    const t = promptTokens(model.tokenizer, phrases, labels);
    const xs = discreteItems(model.tokenizer, items, labels);
    const start = startDiscrete([Array(5).fill(0.2), Array(5).fill(0.2)]);
    const o: DiscreteOptions = { steps: 6, population: 3, lr: 0.5, batchSize: 4, maxTokens: 32, clientSeed: 9, round: 1 };
    // Resumed in slices of 2 steps through the API, in one go locally.
    let remote = start;
    for (let i = 0; i < 3; i++)
      remote = await discreteSteps(completionsRowScorer({ ...api(), maxRowsPerRequest: 10 }), t, xs, remote, 2, o);
    const local = await discreteSteps(localRowScorer(forward), t, xs, start, 10, o);
    expect(remote.step).toBe(6);
    remote.distributions.flat().forEach((p, i) => expect(p).toBeCloseTo(local.distributions.flat()[i]!, 4));
    expect(remote.distributions.flat().some((p) => Math.abs(p - 0.2) > 1e-3)).toBe(true);
    for (const p of remote.distributions) expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    // Each step: 3 prompts x 4 items x 2 labels = 24 rows, 3 requests of at most 10.
    expect(remote.usage).toMatchObject({ rows: 6 * 24, requests: 6 * 3 });
    // A budget of 60 rows pays for two steps.
    const capped = await discreteSteps(localRowScorer(forward), t, xs, start, 10, { ...o, budget: 60 });
    expect(capped).toMatchObject({ step: 2, exhausted: true, usage: { rows: 48 } });
    // Accuracy and the gold label words' NLL per token, from the same scores.
    const best = await promptAccuracy(completionsRowScorer(api()), t, [0, 0], xs, 32);
    const scores = await promptScores(localRowScorer(forward), t, [0, 0], xs, 32);
    expect(best.accuracy).toBe(scores.filter((s, i) => (s[0]! > s[1]! ? 0 : 1) === xs[i]!.gold).length / xs.length);
    expect(best.labelNll).toBeCloseTo(
      -scores.reduce((a, s, i) => a + s[xs[i]!.gold]!, 0) / xs.reduce((n, x) => n + t.labels[x.gold]!.length, 0),
      4,
    );
  });

  it("refuses an API that does not echo log-probs, and a wrong key, with an api_failed error", async () => {
    const t = promptTokens(model.tokenizer, phrases, labels);
    const xs = discreteItems(model.tokenizer, items.slice(0, 2), labels);
    await expect(promptScores(completionsRowScorer({ ...api(), apiKey: "wrong" }), t, null, xs, 32)).rejects.toThrow(
      /refused a scoring request: 401/,
    );
    // A server that answers completions without logprobs (as llama.cpp's server did, ggml-org/llama.cpp#27174).
    const server: Server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            id: "x",
            object: "text_completion",
            created: 0,
            model: "m",
            choices: [0, 1, 2, 3].map((index) => ({ index, text: "a", logprobs: null, finish_reason: "length" })),
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const err = await promptScores(completionsRowScorer({ baseURL: `http://127.0.0.1:${port}/v1`, model: "m" }), t, null, xs, 32).catch(
      (e: unknown) => e,
    );
    server.close();
    expect(err).toBeInstanceOf(FlError);
    expect((err as FlError).code).toBe("api_failed");
    expect((err as Error).message).toMatch(/without the echoed prompt's log-probs/);
  });
});
