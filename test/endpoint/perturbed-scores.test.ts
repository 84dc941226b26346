// The endpoint's perturbed-scores extension: a FedKSeed client whose model lives at the endpoint names
// points by seed terms; the endpoint's losses and the resulting steps equal the local ones.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { tokenizeExample } from "../../src/data/examples.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { endpointZoEvaluator } from "../../src/fl/methods/fedkseed/zo-endpoint.ts";
import {
  localZoEvaluator,
  startZo,
  zoInitial,
  zoLocalSteps,
  zoSpec,
  zoSteps,
  type ZoTask,
} from "../../src/fl/methods/fedkseed/zo-update.ts";
import { applyTerms, seedPool, type SeedTerms } from "../../src/fl/methods/fedkseed/seed-pool.ts";
import type { FedKSeedConfig } from "../../src/fl/methods/fedkseed/config.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("perturbed");
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 17);
const modelDir = writeHfModel(join(root, "tiny"), config, weights);
const method: FedKSeedConfig = {
  type: "fedkseed",
  k: 16,
  epsilon: 1e-3,
  direction: "gaussian",
  pro: false,
  trains: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"], rslora: false },
};
let endpoint: RunningEndpoint;

beforeAll(async () => {
  endpoint = await startEndpoint({ model: await loadModel(dirSource(modelDir)), fingerprint: "fp", name: "tiny", port: 0, token: "t" });
});
afterAll(async () => {
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("POST /v1/perturbed-scores", () => {
  it("scores rows at w0 + seed terms as the local forward does, and a remote step equals the local step", async () => {
    const model = await loadModel(dirSource(modelDir));
    const examples = ["The fox trains.", "Each client trains, the server averages."].map((text) =>
      tokenizeExample({ text }, model.tokenizer, 2, 32),
    );
    const forward = await ForwardModel.create(ortNodeRuntime(), config, weights, {
      kind: "forward",
      nll: true,
      inputs: zoSpec(method.trains),
    });
    const local = localZoEvaluator(forward, method.direction);
    const remote = endpointZoEvaluator({ url: endpoint.url, model: "tiny", token: "t" }, method, 9);
    const w0 = zoInitial(config, weights, method.trains, 9);
    const pool = seedPool(3, 16);
    const terms: SeedTerms = [
      [pool[2]!, 0.05],
      [pool[7]!, -0.02],
    ];
    const there = await remote.rowNlls(examples, terms);
    const here = await local.rowNlls(examples, applyTerms(w0, terms));
    there.forEach((x, i) => expect(x).toBeCloseTo(here[i]!, 4));
    // The perturbation is applied: the base point scores differently.
    expect(Math.abs((await remote.rowNlls(examples, []))[0]! - there[0]!)).toBeGreaterThan(1e-4);
    const health = (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: "Bearer t" } })).json()) as {
      perturbed_rows: number;
    };
    expect(health.perturbed_rows).toBe(2 * 2);
    await forward.release();
  });

  it("a client round of FedKSeed steps with its model only at the endpoint equals the same round run locally", async () => {
    const model = await loadModel(dirSource(modelDir));
    const labels = ["fox", "dog"];
    const examples = Array.from({ length: 6 }, (_, i) =>
      tokenizeExample(
        { prompt: `The ${["quick", "lazy", "sleepy"][i % 3]} animal is a`, completion: ` ${labels[i % 2]}` },
        model.tokenizer,
        2,
        32,
      ),
    );
    const task: ZoTask = {
      round: 2,
      local: { steps: 6, batchSize: 3, lr: 0.5, maxTokens: 32 },
      method: { ...method, labels },
      quant: "f32",
      federationSeed: 9,
      seed: 4,
      labelIds: labels.map((l) => model.tokenizer.encode(` ${l}`, { addSpecialTokens: false })),
    };
    const w0 = zoInitial(config, weights, method.trains, 9);
    const local = await zoLocalSteps({ config, weights, runtime: ortNodeRuntime() }, task, examples, startZo(w0));
    const ep = endpointZoEvaluator({ url: endpoint.url, model: "tiny", token: "t" }, method, 9);
    const remote = await zoSteps(ep, task, examples, startZo<SeedTerms>([]), 3);
    const resumed = await zoSteps(ep, task, examples, remote);
    expect(resumed.step).toBe(6);
    expect([...resumed.sums.keys()]).toEqual([...local.sums.keys()]);
    for (const [j, c] of local.sums) expect(resumed.sums.get(j)).toBeCloseTo(c, 2);
    // The remote point is the steps as terms: applied to w0 it is the local client's tensors.
    expect(resumed.params).toHaveLength(6 - resumed.skipped);
    const rebuilt = applyTerms(w0, resumed.params);
    for (const [k, t] of local.params) t.forEach((x, i) => expect(rebuilt.get(k)![i]).toBeCloseTo(x, 4));
  });

  it.each([
    ["a loss mask of the wrong length", { loss_mask: [[0, 1]] }, /loss_mask\[0\]/],
    ["an unknown tensor", { trains: { type: "full", tensors: ["model.layers.7.mlp.up_proj.weight"] } }, /not a tensor of this model/],
    ["a seed that is not a 32-bit integer", { terms: [[-1, 0.1]] }, /terms/],
  ])("refuses %s", async (_, change, message) => {
    const body = { model: "tiny", input_ids: [[1, 40, 41]], loss_mask: [[0, 1, 1]], trains: method.trains, terms: [], ...change };
    const res = await fetch(`${endpoint.url}/v1/perturbed-scores`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer t" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
  });
});
