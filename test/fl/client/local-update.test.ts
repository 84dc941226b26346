import { describe, expect, it } from "vitest";
import { tokenizeExample } from "../../../src/data/examples.ts";
import { initLoraParams } from "../../../src/engine/lora/init.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../../src/engine/tokenizer/load.ts";
import { localResult, runLocalSteps, startLocal, type LocalTask } from "../../../src/fl/client/local-update.ts";
import { loraPlan } from "../../../src/fl/methods/lora/plan.ts";
import type { TensorMap } from "../../../src/fl/tensors.ts";
import { tinyTokenizerJson } from "../../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const base = tinyWeights(config, 6);
const model = { config, weights: async () => base, runtime: ortNodeRuntime() };
const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize));
const examples = ["The fox trains.", "The dog averages.", "Each client trains.", "The server averages.", "The sun sleeps."].map((text) =>
  tokenizeExample({ text }, tok, 2, 32),
);
// The global adapter as the aggregator stores it: PEFT keys, B = 0.
const global: TensorMap = new Map([...initLoraParams(config, 4, ["q_proj", "v_proj"], 3)].map(([k, v]) => [`base_model.model.${k}`, v]));
const task = (mu = 0): LocalTask => ({
  round: 1,
  proximalMu: mu,
  local: { steps: 6, batchSize: 2, lr: 2e-2, maxTokens: 32 },
  plan: loraPlan({ type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], dropout: 0, rslora: false, fromLayer: 0 }, config, {
    offloaded: false,
    seed: 2,
  }),
  quant: "int8",
  seed: 1,
});
const norm = (t: TensorMap) => Math.sqrt([...t.values()].reduce((s, v) => s + v.reduce((a, x) => a + x * x, 0), 0));

describe("a client's local update", () => {
  it("split over two invocations gives exactly the update of one", async () => {
    const whole = await runLocalSteps(model, task(), global, examples, startLocal(global));
    const half = await runLocalSteps(model, task(), global, examples, startLocal(global), 3);
    expect(half.step).toBe(3);
    const resumed = await runLocalSteps(model, task(), global, examples, half);
    expect(resumed.step).toBe(6);
    for (const [k, v] of whole.params) expect(resumed.params.get(k)).toEqual(v);
    expect(resumed.lossSum).toBe(whole.lossSum);
  });

  it("with a session map, builds the training session once across invocations and gives the same update", async () => {
    const sessions = new Map();
    const kept = { ...model, sessions };
    const whole = await runLocalSteps(model, task(), global, examples, startLocal(global));
    const half = await runLocalSteps(kept, task(), global, examples, startLocal(global), 3);
    const [first] = sessions.values();
    const resumed = await runLocalSteps(kept, task(), global, examples, half);
    expect(sessions.size).toBe(1);
    expect([...sessions.values()][0]).toBe(first);
    for (const [k, v] of whole.params) expect(resumed.params.get(k)).toEqual(v);
    await first.release();
  });

  it("returns a delta in PEFT key names with the example count and train loss", async () => {
    const state = await runLocalSteps(model, task(), global, examples, startLocal(global));
    const r = localResult(global, state, examples.length);
    expect([...r.delta.keys()]).toEqual([...global.keys()]);
    expect(norm(r.delta)).toBeGreaterThan(0);
    expect(r.numExamples).toBe(5);
    expect(r.metrics.local_steps).toBe(6);
    expect(r.metrics.train_loss).toBeGreaterThan(0);
  });

  it("FFA-LoRA: A stays exactly as the version has it, B trains, and the delta holds B alone", async () => {
    const ffa: LocalTask = {
      ...task(0.5),
      plan: loraPlan(
        { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], dropout: 0, rslora: false, fromLayer: 0, freezeA: true },
        config,
        { offloaded: false, seed: 2 },
      ),
    };
    const state = await runLocalSteps(model, ffa, global, examples, startLocal(global));
    const a = [...global.keys()].filter((k) => k.endsWith(".lora_A.weight"));
    const b = [...global.keys()].filter((k) => k.endsWith(".lora_B.weight"));
    expect(a.length).toBe(4);
    for (const k of a) expect(state.params.get(k.slice("base_model.model.".length))).toEqual(global.get(k));
    const r = localResult(global, state, examples.length, ffa.plan.frozen);
    expect([...r.delta.keys()]).toEqual(b);
    expect(norm(r.delta)).toBeGreaterThan(0);
    // The plain plan moves A too, from the same start.
    const plain = localResult(global, await runLocalSteps(model, task(0.5), global, examples, startLocal(global)), 5);
    expect(norm(new Map(a.map((k) => [k, plain.delta.get(k)!])))).toBeGreaterThan(0);
  });

  it("stays closer to the global adapter under FedProx's proximal term", async () => {
    const free = localResult(global, await runLocalSteps(model, task(0), global, examples, startLocal(global)), 5);
    const prox = localResult(global, await runLocalSteps(model, task(50), global, examples, startLocal(global)), 5);
    expect(norm(prox.delta)).toBeLessThan(norm(free.delta) * 0.9);
  });
});

describe("the client's persisted state", () => {
  it("round-trips through bytes and resumes to the same update", async () => {
    const { decodeLocalState, encodeLocalState } = await import("../../../src/fl/client/state-file.ts");
    const half = await runLocalSteps(model, task(), global, examples, startLocal(global), 3);
    const restored = decodeLocalState(encodeLocalState(half));
    expect(restored).toEqual(half);
    const a = await runLocalSteps(model, task(), global, examples, half);
    const b = await runLocalSteps(model, task(), global, examples, restored);
    for (const [k, v] of a.params) expect(b.params.get(k)).toEqual(v);
  });
});
