import { describe, expect, it } from "vitest";
import { ForwardModel } from "../../src/engine/forward.ts";
import { EMBED } from "../../src/engine/llama/names.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { labelAccuracy } from "../../src/engine/train/evaluate.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import {
  bbtAggregate,
  bbtClientRound,
  bbtGenerations,
  initialPrompt,
  localPromptScorer,
  project,
  projectionScale,
  startBbt,
  type PromptScorer,
} from "../../src/fl/methods/fedbpt/search.ts";
import { direction } from "../../src/fl/directions.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 19);
const space = { promptTokens: 3, dimension: 8, seed: 5 };

describe("FedBPT's subspace", () => {
  it("projects z by A made a column at a time: linear, seeded, equal to the explicit product", () => {
    const H = config.hiddenSize;
    const z = [0.5, -1, 0, 2, 0.25, 0, -0.5, 1];
    const az = project(z, space, H, 0.1);
    const n = space.promptTokens * H;
    const explicit = new Float32Array(n);
    for (let i = 0; i < 8; i++) {
      const col = direction("gaussian", 5, `fedbpt/A/${i}`, n);
      for (let k = 0; k < n; k++) explicit[k]! += 0.1 * z[i]! * col[k]!;
    }
    az.forEach((x, k) => expect(x).toBeCloseTo(explicit[k]!, 6));
    const doubled = project(
      z.map((x) => 2 * x),
      space,
      H,
      0.1,
    );
    doubled.forEach((x, k) => expect(x).toBeCloseTo(2 * az[k]!, 5));
    expect(project(z, { ...space, seed: 6 }, H, 0.1)).not.toEqual(az);
    expect(projectionScale(config, weights, 100)).toBeGreaterThan(0);
  });

  it("starts from real token embeddings", () => {
    const p0 = initialPrompt(config, weights, space);
    const e = weights.get(EMBED)!;
    const H = config.hiddenSize;
    for (let t = 0; t < 3; t++) {
      const row = p0.subarray(t * H, (t + 1) * H);
      const match = Array.from({ length: config.vocabSize }, (_, id) => id).some((id) =>
        e.subarray(id * H, (id + 1) * H).every((x, k) => x === row[k]),
      );
      expect(match).toBe(true);
    }
  });

  it("recombines the clients' means by their examples and pools their step sizes", () => {
    const g = bbtAggregate([
      { mean: [1, 0], sigma: 0.5, numExamples: 10 },
      { mean: [0, 2], sigma: 1, numExamples: 30 },
    ]);
    expect(g.mean).toEqual([0.25, 1.5]);
    expect(g.sigma).toBeCloseTo(Math.sqrt((10 * 0.25 + 30 * 1) / 40), 12);
  });

  it("a client's CMA-ES round lowers the verbalizer cross-entropy of its examples", async () => {
    const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize), { bos_token: "<s>", add_bos_token: true });
    const labels = ["fox", "dog"];
    const items = ["The quick brown", "The lazy", "Each client trains, the", "It runs away, the", "The sun and the", "Rockets and the"].map(
      (prompt, i) => ({ prompt, label: labels[i % 2]! }),
    );
    const scorer = await localPromptScorer(ortNodeRuntime(), config, weights, tok, space, { labels }, 32);
    const before = (await scorer.score(Array(8).fill(0), items)).crossEntropy;
    const r = await bbtClientRound(scorer, { mean: Array(8).fill(0), sigma: 1 }, items, { generations: 6, seed: 3 });
    expect(r.evaluations).toBe(6 * (4 + Math.floor(3 * Math.log(8))));
    expect(r.loss).toBeLessThan(before);
    expect(r.mean).toHaveLength(8);
    expect(r.numExamples).toBe(6);
    await scorer.release();
  });

  it("as a suffix, the soft prompt sits between each prompt and its label words", async () => {
    const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize), { bos_token: "<s>", add_bos_token: true });
    const labels = ["fox", "dog"];
    const items = ["The quick brown", "The lazy", "Each client trains, the", "It runs away, the"].map((prompt, i) => ({
      prompt,
      label: labels[i % 2]!,
    }));
    // At z = 0 the prompt is p0, rows of the embedding table: it scores as those tokens after each prompt.
    const H = config.hiddenSize;
    const table = weights.get(EMBED)!;
    const p0 = initialPrompt(config, weights, space);
    const tokens = Array.from(
      { length: space.promptTokens },
      (_, t) =>
        Array.from({ length: config.vocabSize }, (_, id) => id).find((id) =>
          table.subarray(id * H, (id + 1) * H).every((x, k) => x === p0[t * H + k]),
        )!,
    );
    const plain = await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "forward", nll: true });
    const byHand = await labelAccuracy(plain, tok, items, labels, { maxTokens: 32, after: tokens });
    const suffix = await localPromptScorer(ortNodeRuntime(), config, weights, tok, space, { labels, placement: "suffix" }, 32);
    expect((await suffix.score(Array(8).fill(0), items)).crossEntropy).toBeCloseTo(byHand.crossEntropy, 5);
    const prefix = await localPromptScorer(ortNodeRuntime(), config, weights, tok, space, { labels }, 32);
    expect(Math.abs((await prefix.score(Array(8).fill(0), items)).crossEntropy - byHand.crossEntropy)).toBeGreaterThan(1e-4);
    await Promise.all([plain.release(), suffix.release(), prefix.release()]);
  });

  it(`perturbation: the fitness is the cross-entropy over that on the perturbed copy, \
which every candidate of a generation shares`, async () => {
    const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize), { bos_token: "<s>", add_bos_token: true });
    const labels = ["fox", "dog"];
    const items = ["The quick brown", "The lazy", "Each client trains, the", "It runs away, the"].map((prompt, i) => ({
      prompt,
      label: labels[i % 2]!,
    }));
    const scorer = await localPromptScorer(ortNodeRuntime(), config, weights, tok, space, { labels }, 32);
    const z = Array(8).fill(0.3);
    const clean = (await scorer.score(z, items)).crossEntropy;
    const noise = (rate: number, seed: number) => ({ rate, draws: () => seededUniform(seed) });
    expect((await scorer.score(z, items, noise(0, 1))).crossEntropy).toBe(clean);
    const noisy = (await scorer.score(z, items, noise(0.5, 1))).crossEntropy;
    expect(Math.abs(noisy - clean)).toBeGreaterThan(1e-4);
    expect((await scorer.score(z, items, noise(0.5, 1))).crossEntropy).toBe(noisy);
    expect((await scorer.score(z, items, noise(0.5, 2))).crossEntropy).not.toBe(noisy);
    await scorer.release();

    // A scorer whose perturbed cross-entropy is 2: the same candidates, each fitness halved.
    const fake: PromptScorer = {
      score: async (x, _items, n) => ({ accuracy: 0, crossEntropy: n ? 2 : x.reduce((a, b) => a + b * b, 1) }),
      release: async () => {},
    };
    const start = startBbt({ mean: Array(8).fill(1), sigma: 0.5 }, 4);
    const plain = await bbtGenerations(fake, start, () => items, 3);
    const ratio = await bbtGenerations(
      fake,
      start,
      () => items,
      3,
      undefined,
      () => noise(0.5, 1),
    );
    expect(ratio.evaluations).toBe(2 * plain.evaluations);
    expect(ratio.lastBest).toBeCloseTo(plain.lastBest / 2, 12);
    ratio.cma.mean.forEach((m, i) => expect(m).toBeCloseTo(plain.cma.mean[i]!, 12));
  });
});
