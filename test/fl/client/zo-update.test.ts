import { describe, expect, it } from "vitest";
import { exampleBatch, tokenizeExample } from "../../../src/data/examples.ts";
import { ForwardModel } from "../../../src/engine/forward.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../../src/engine/tokenizer/load.ts";
import { startZo, zoGlobal, zoInitial, zoLocalSteps, zoMetrics, zoSpec, type ZoTask } from "../../../src/fl/methods/fedkseed/zo-update.ts";
import { roundStream } from "../../../src/engine/sampling.ts";
import { labelAccuracy, wordIds } from "../../../src/engine/train/evaluate.ts";
import { perturbed, pickSeed, seedPool, seedProbabilities } from "../../../src/fl/methods/fedkseed/seed-pool.ts";
import type { TensorMap } from "../../../src/fl/tensors.ts";
import { tinyTokenizerJson } from "../../fixtures/hf-model.ts";
import { zoExamples, zoTask } from "../../fixtures/zo-task.ts";
import { tinyConfig, tinyWeights } from "../../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const model = { config, weights: tinyWeights(config, 8), runtime: ortNodeRuntime() };
const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize));
const examples = zoExamples(tok);

/** The mean NLL of all the examples with the method's tensors at `params`. */
async function lossAt(t: ZoTask, params: TensorMap): Promise<number> {
  const forward = await ForwardModel.create(model.runtime, config, model.weights, {
    kind: "forward",
    nll: true,
    inputs: zoSpec(t.method.trains),
  });
  const b = exampleBatch(examples);
  const { nll } = await forward.run({ ids: b.ids, mask: b.mask!, targets: b.targets, params });
  return b.lossWeights.flat().reduce((s, w, i) => s + w * nll![i]!, 0);
}

describe("a FedKSeed client's local work", () => {
  it("keeps only per-seed sums, from which w0 - lr sum_j c_j z_j rebuilds the stepped parameters", async () => {
    const t = zoTask({});
    const w0 = zoInitial(config, model.weights, t.method.trains, t.federationSeed);
    const state = await zoLocalSteps(model, t, examples, startZo(w0));
    expect(state.step).toBe(12);
    expect(state.sums.size).toBeGreaterThan(0);
    expect(state.sums.size).toBeLessThanOrEqual(12);
    const rebuilt = zoGlobal(w0, t, state.sums);
    for (const [k, v] of state.params) v.forEach((x, i) => expect(rebuilt.get(k)![i]).toBeCloseTo(x, 5));
    expect(zoMetrics(state)).toMatchObject({ local_steps: 12, skipped_steps: 0, seeds_used: state.sums.size });
  });

  it("split over two invocations gives exactly the steps of one", async () => {
    const t = zoTask({});
    const w0 = zoInitial(config, model.weights, t.method.trains, t.federationSeed);
    const whole = await zoLocalSteps(model, t, examples, startZo(w0));
    const half = await zoLocalSteps(model, t, examples, startZo(w0), 5);
    const resumed = await zoLocalSteps(model, t, examples, half);
    expect(resumed.sums).toEqual(whole.sums);
    for (const [k, v] of whole.params) expect(resumed.params.get(k)).toEqual(v);
  });

  it("lowers the loss forward-only, on whole tensors of the model", async () => {
    const t = zoTask(
      { k: 64, trains: { type: "full", tensors: ["model.norm.weight", "model.layers.1.post_attention_layernorm.weight"] } },
      150,
      5e-3,
    );
    const w0 = zoInitial(config, model.weights, t.method.trains, t.federationSeed);
    expect(w0.get("model.norm.weight")).toEqual(model.weights.get("model.norm.weight"));
    const state = await zoLocalSteps(model, t, examples, startZo(w0));
    expect(await lossAt(t, state.params)).toBeLessThan((await lossAt(t, w0)) - 0.05);
  });

  it("draws seeds by their history under FedKSeed-Pro", async () => {
    const t = zoTask({ pro: true, k: 8 }, 10);
    const w0 = zoInitial(config, model.weights, t.method.trains, t.federationSeed);
    const history = Array.from({ length: 8 }, (_, j) => (j === 3 || j === 6 ? [1, -1] : [0.001]));
    // The draws the client makes: one uniform number per step, through Pro's probabilities or not.
    const draws = (p?: number[]) =>
      [...new Set(Array.from({ length: 10 }, (_, step) => pickSeed(8, roundStream(t.seed, t.round, 1, step)(), p)))].sort();
    const pro = await zoLocalSteps(model, t, examples, startZo(w0), Infinity, history);
    const plain = await zoLocalSteps(model, { ...t, method: { ...t.method, pro: false } }, examples, startZo(w0), Infinity, history);
    expect([...pro.sums.keys()].sort()).toEqual(draws(seedProbabilities(history, 1)));
    expect([...plain.sums.keys()].sort()).toEqual(draws());
    expect(draws(seedProbabilities(history, 1))).not.toEqual(draws());
  });

  it("with the method's labels, minimises the verbalizer cross-entropy of the batch, not the completion's NLL", async () => {
    const labels = ["fox", "dog"];
    const pairs = ["The quick brown", "The lazy", "Each client trains, the", "It runs away, the"].map((prompt, i) => ({
      prompt,
      completion: ` ${labels[i % 2]}`,
    }));
    const labeled = pairs.map((p) => tokenizeExample(p, tok, 2, 32));
    const labelIds = wordIds(tok, labels);
    const t: ZoTask = { ...zoTask({ k: 8, labels }, 1), local: { steps: 1, batchSize: 4, lr: 1e-3, maxTokens: 32 }, labelIds };
    const w0 = zoInitial(config, model.weights, t.method.trains, t.federationSeed);
    const state = await zoLocalSteps(model, t, labeled, startZo(w0));
    const j = [...state.sums.keys()][0]!;
    const forward = await ForwardModel.create(model.runtime, config, model.weights, {
      kind: "forward",
      nll: true,
      inputs: zoSpec(t.method.trains),
    });
    const items = pairs.map((p) => ({ prompt: p.prompt, label: p.completion.trim() }));
    const ce = async (scale: number) =>
      (await labelAccuracy(forward, tok, items, labels, { maxTokens: 32, params: perturbed(w0, seedPool(t.federationSeed, 8)[j]!, scale) }))
        .crossEntropy;
    expect(state.lossSum).toBeCloseTo(((await ce(1e-3)) + (await ce(-1e-3))) / 2, 5);
    await expect(zoLocalSteps(model, t, examples, startZo(w0))).rejects.toThrow(/none of the method's labels/);
    // With label words, the gold label still comes from the completion, but the words are what is scored.
    const words = ["cat", "bird"];
    const worded = await zoLocalSteps(model, { ...t, wordIds: wordIds(tok, words) }, labeled, startZo(w0));
    expect([...worded.sums.keys()]).toEqual([j]);
    const wordCe = async (scale: number) =>
      (
        await labelAccuracy(forward, tok, items, labels, {
          maxTokens: 32,
          params: perturbed(w0, seedPool(t.federationSeed, 8)[j]!, scale),
          words,
        })
      ).crossEntropy;
    expect(worded.lossSum).toBeCloseTo(((await wordCe(1e-3)) + (await wordCe(-1e-3))) / 2, 5);
    expect(Math.abs(worded.lossSum - state.lossSum)).toBeGreaterThan(1e-3);
  });
});
