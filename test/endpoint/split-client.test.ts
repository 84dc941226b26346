// A split client against the endpoint over HTTP: trunk states fetched once and cached per example,
// re-fetched when the endpoint's model fingerprint changes, and training on them equals training the
// whole model with a frozen bottom.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { windowBatch } from "../../src/data/lm-windows.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { TrainStep } from "../../src/engine/train/step.ts";
import { connectTrunk, padStates, trunkStates } from "../../src/fl/client/trunk-states.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyLora, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("split-client");
const config = tinyConfig({ heads: 4, kvHeads: 2, layers: 4 });
const weights = tinyWeights(config, 31);
const modelDir = writeHfModel(join(root, "tiny"), config, weights);
const CUT = 2;
let endpoint: RunningEndpoint;

beforeAll(async () => {
  endpoint = await startEndpoint({ model: await loadModel(dirSource(modelDir)), fingerprint: "fp-1", name: "tiny", port: 0, token: "t" });
});
afterAll(async () => {
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

function memoryCache() {
  const store = new Map<string, Float32Array>();
  return { store, get: async (k: string) => store.get(k) ?? null, put: async (k: string, v: Float32Array) => void store.set(k, v) };
}

describe("a split client over HTTP", () => {
  const batch = windowBatch([
    [1, 10, 20, 30, 40, 50, 60],
    [1, 11, 21, 31, 41, 51, 61],
  ]);

  it("caches trunk states per example and trains on them as end-to-end training with a frozen bottom", async () => {
    const ep = await connectTrunk(endpoint.url, config.hiddenSize, "t");
    expect(ep).toMatchObject({ model: "tiny", fingerprint: "fp-1" });
    const cache = memoryCache();
    const first = await trunkStates(ep, cache, CUT, batch.ids);
    expect(cache.store.size).toBe(2);
    // The second epoch is served from the cache: the same arrays, no request.
    const offline = { ...ep, url: "http://127.0.0.1:9" };
    const second = await trunkStates(offline, cache, CUT, batch.ids);
    second.forEach((s, i) => expect(s).toBe(first[i]));

    const local = await (await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "hidden", after: CUT })).run({
      ids: batch.ids,
    });
    const hidden = padStates(first, 6, config.hiddenSize);
    expect(maxAbsDiff(hidden, local.hidden!)).toBeLessThan(1e-5);

    const spec = { lora: { r: 4, scaling: 2, modules: ["q_proj" as const, "v_proj" as const], fromLayer: CUT } };
    const params = new Map<string, Float32Array>();
    for (const [name, p] of tinyLora(config, ["q_proj", "v_proj"], 4, 8))
      if (Number(name.split(".")[2]) >= CUT) params.set(`${name}.lora_A.weight`, p.a).set(`${name}.lora_B.weight`, p.b);
    const e2e = await (await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "train", spec })).run(batch, params);
    const split = await (await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "split", spec, fromLayer: CUT })).run(
      { ...batch, hidden },
      params,
    );
    expect(Math.abs(split.loss - e2e.loss)).toBeLessThan(1e-4);
    for (const [name, g] of e2e.grads) expect(maxAbsDiff(split.grads.get(name)!, g) / Math.max(...g.map(Math.abs))).toBeLessThan(1e-4);
  });

  it("misses the cache when the model fingerprint changes, and refuses states from a changed endpoint", async () => {
    const ep = await connectTrunk(endpoint.url, config.hiddenSize, "t");
    const cache = memoryCache();
    await trunkStates(ep, cache, CUT, batch.ids);
    await trunkStates({ ...ep, fingerprint: "fp-2" }, cache, CUT, batch.ids).catch(() => undefined);
    // Keys under another fingerprint are new entries, never the old ones.
    expect(cache.store.size).toBe(2);
    await expect(trunkStates({ ...ep, fingerprint: "fp-2" }, memoryCache(), CUT, batch.ids)).rejects.toThrow(/model changed/);
  });
});

describe("a client's local update with its trunk offloaded", () => {
  it("equals the update computed with the whole model locally, over several steps", async () => {
    const { runLocalSteps, startLocal } = await import("../../src/fl/client/local-update.ts");
    const { initLoraParams } = await import("../../src/engine/lora/init.ts");
    const { tokenizeExample } = await import("../../src/data/examples.ts");
    const model = await loadModel(dirSource(modelDir));
    const examples = ["The fox trains.", "The dog averages.", "Each client trains.", "The server sleeps in the sun."].map((text) =>
      tokenizeExample({ text }, model.tokenizer, 2, 32),
    );
    const global = new Map([...initLoraParams(config, 4, ["q_proj", "v_proj"], 3, CUT)].map(([k, v]) => [`base_model.model.${k}`, v]));
    expect([...global.keys()].every((k) => Number(k.split(".")[4]) >= CUT)).toBe(true);
    const { loraPlan } = await import("../../src/fl/methods/lora/plan.ts");
    const method = {
      type: "lora" as const,
      r: 4,
      alpha: 8,
      targetModules: ["q_proj" as const, "v_proj" as const],
      dropout: 0,
      rslora: false,
      fromLayer: CUT,
    };
    // The same task, planned for the whole model and for the layers above the cut.
    const task = (offloaded: boolean) => ({
      round: 1,
      proximalMu: 0,
      local: { steps: 4, batchSize: 3, lr: 1e-2, maxTokens: 32 },
      plan: loraPlan(method, config, { offloaded, seed: 2 }),
      quant: "f32" as const,
      seed: 1,
    });
    const local = { config, weights: async () => weights, runtime: ortNodeRuntime() };
    const whole = await runLocalSteps(local, task(false), global, examples, startLocal(global));
    const cache = memoryCache();
    const offloaded = await runLocalSteps(local, task(true), global, examples, startLocal(global), Infinity, {
      endpoint: await connectTrunk(endpoint.url, config.hiddenSize, "t"),
      cache,
    });
    expect(cache.store.size).toBe(examples.length);
    expect(Math.abs(offloaded.lossSum - whole.lossSum)).toBeLessThan(1e-4);
    for (const [k, v] of whole.params) expect(maxAbsDiff(offloaded.params.get(k)!, v)).toBeLessThan(1e-5);
  });
});
