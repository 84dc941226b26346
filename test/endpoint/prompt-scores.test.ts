// The endpoint's prompt-scores extension: a FedBPT client whose model lives at the endpoint sends token
// ids and z; the endpoint projects the soft prompt itself and scores as the local graph does.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model-files.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { bbtClientRound, endpointPromptScorer, localPromptScorer } from "../../src/fl/methods/fedbpt/search.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("prompt-scores");
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 23);
const modelDir = writeHfModel(join(root, "tiny"), config, weights);
const space = { promptTokens: 3, dimension: 6, seed: 11 };
const labels = ["fox", "dog"];
const items = ["The quick brown", "The lazy", "Each client trains, the", "It runs away, the", "The sun and the", "Rockets and the"].map(
  (prompt, i) => ({ prompt, label: labels[i % 2]! }),
);
const z = [0.4, -1.2, 0.3, 0, 2, -0.5];
let endpoint: RunningEndpoint;
let model: LoadedModel;
const ep = () => ({ url: endpoint.url, model: "tiny", token: "t" });

beforeAll(async () => {
  model = await loadModel(dirSource(modelDir));
  endpoint = await startEndpoint({ model, fingerprint: "fp", name: "tiny", port: 0, token: "t" });
});
afterAll(async () => {
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

const post = (body: unknown) =>
  fetch(`${endpoint.url}/v1/prompt-scores`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer t" },
    body: JSON.stringify(body),
  });

describe("POST /v1/prompt-scores", () => {
  it.each(["prefix", "suffix"] as const)(
    "scores a soft prompt made at the endpoint from z as the local graph does (%s)",
    async (placement) => {
      const verbalizer = { labels, placement };
      const local = await localPromptScorer(ortNodeRuntime(), config, weights, model.tokenizer, space, verbalizer, 32);
      const remote = endpointPromptScorer(ep(), config, model.tokenizer, space, verbalizer, 32);
      const here = await local.score(z, items);
      const there = await remote.score(z, items);
      expect(there.crossEntropy).toBeCloseTo(here.crossEntropy, 5);
      expect(there.accuracy).toBe(here.accuracy);
      // z reaches the prompt: another z scores otherwise.
      expect(
        Math.abs(
          (
            await remote.score(
              z.map((x) => -x),
              items,
            )
          ).crossEntropy - there.crossEntropy,
        ),
      ).toBeGreaterThan(1e-4);
      // A client's CMA-ES round through the endpoint equals the local round.
      const o = { generations: 2, seed: 3 };
      const a = await bbtClientRound(remote, { mean: Array(6).fill(0), sigma: 1 }, items, o);
      const b = await bbtClientRound(local, { mean: Array(6).fill(0), sigma: 1 }, items, o);
      a.mean.forEach((m, i) => expect(m).toBeCloseTo(b.mean[i]!, 4));
      await local.release();
    },
  );

  it("sends more rows than one request takes in several requests", async () => {
    const many = Array.from({ length: 25 }, () => items).flat();
    const verbalizer = { labels, placement: "suffix" as const };
    const local = await localPromptScorer(ortNodeRuntime(), config, weights, model.tokenizer, space, verbalizer, 32);
    const before = (
      (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: "Bearer t" } })).json()) as { prompt_rows: number }
    ).prompt_rows;
    // 150 items x 2 labels = 300 rows: over the 256 one request may carry.
    expect((await endpointPromptScorer(ep(), config, model.tokenizer, space, verbalizer, 32).score(z, many)).crossEntropy).toBeCloseTo(
      (await local.score(z, many)).crossEntropy,
      5,
    );
    expect(
      ((await (await fetch(`${endpoint.url}/health`, { headers: { authorization: "Bearer t" } })).json()) as { prompt_rows: number })
        .prompt_rows - before,
    ).toBe(300);
    await local.release();
  });

  it("refuses a z of the wrong length, ids beyond the prompt's, a bad mask and a one-token row, with 400s", async () => {
    const V = config.vocabSize;
    const prompt = { tokens: 3, dimension: 6, seed: 11, placement: "suffix", z };
    const cases: [unknown, RegExp][] = [
      [
        { model: "tiny", input_ids: [[1, 5, 6]], loss_mask: [[0, 0, 1]], prompt: { ...prompt, z: [1, 2] } },
        /prompt.z has 2 numbers for dimension 6/,
      ],
      [
        { model: "tiny", input_ids: [[1, V + 3, 6]], loss_mask: [[0, 0, 1]], prompt },
        /token id \d+ is outside the vocabulary and the prompt's ids/,
      ],
      [
        { model: "tiny", input_ids: [[1, V, 6]], loss_mask: [[0, 0, 1]], prompt: { ...prompt, placement: "prefix" } },
        /is outside the vocabulary \[0/,
      ],
      [{ model: "tiny", input_ids: [[1, 5, 6]], loss_mask: [[0, 1]], prompt }, /loss_mask\[0\] must have one entry per token/],
      [{ model: "tiny", input_ids: [[1]], loss_mask: [[0]], prompt }, /a row needs two to score one/],
      [{ model: "tiny", input_ids: [[1, 5]], loss_mask: [[0, 1]], prompt: { ...prompt, z: [1, 2, 3, 4, 5, Number.NaN] } }, /prompt.z/],
    ];
    for (const [body, message] of cases) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    }
    const ok = await post({ model: "tiny", input_ids: [[1, V, V + 1, V + 2, 6]], loss_mask: [[0, 0, 0, 0, 1]], prompt });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { tokens: number[] }).tokens).toEqual([1]);
    const health = (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: "Bearer t" } })).json()) as {
      prompt_rows: number;
    };
    expect(health.prompt_rows).toBeGreaterThan(0);
  });
});
