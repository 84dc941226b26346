import { describe, expect, it } from "vitest";
import { ForwardModel } from "../../src/engine/forward.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import {
  beforeCompletion,
  exampleNlls,
  goldIndex,
  heldOutLoss,
  labelAccuracy,
  labelRows,
  labelScores,
  scoresOfLabelRows,
  wordIds,
} from "../../src/engine/train/evaluate.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { referenceLogprobs } from "../reference/llama-f64.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 77);
const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize), { bos_token: "<s>", add_bos_token: true });
const labels = ["fox", "dog", "sun"];
const items = ["The quick brown", "Each client trains, the", "It's 2026: workers and", "Federated learning trains one"].map(
  (prompt, i) => ({ prompt, label: labels[i % 3]! }),
);

/** log p of each label's words after the prompt, by the float64 reference. */
function referenceScores(prompt: string, maxTokens: number): number[] {
  return labels.map((l) => {
    const words = tok.encode(` ${l}`, { addSpecialTokens: false });
    const ids = [...tok.encode(prompt).slice(0, maxTokens - words.length), ...words];
    const lp = referenceLogprobs(config, weights, ids);
    return lp.slice(-words.length).reduce((a, b) => a + b, 0);
  });
}

describe("held-out evaluation", () => {
  it("finds a gold label's index among the task's labels, and refuses one not among them, naming both", () => {
    expect(labels.map((l) => goldIndex(l, labels))).toEqual([0, 1, 2]);
    expect(() => goldIndex("cat", labels)).toThrow(new RangeError('label "cat" is not one of ["fox","dog","sun"]'));
  });

  it("picks the label whose words are most probable, as the float64 reference does, whatever the batching", async () => {
    const model = await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "forward", nll: true });
    for (const maxTokens of [64, 4]) {
      const expected = items.map(
        (x) => labels[referenceScores(x.prompt, maxTokens).reduce((best, s, i, all) => (s > all[best]! ? i : best), 0)]!,
      );
      const gold = items.map((x) => x.label);
      const want = expected.filter((p, i) => p === gold[i]).length / items.length;
      for (const batchSize of [1, 5]) {
        const got = await labelAccuracy(model, tok, items, labels, { maxTokens, batchSize });
        expect(got.predicted).toEqual(expected);
        expect(got.accuracy).toBe(want);
      }
    }
  });

  it("scores one-token words from one pass a prompt as their own rows score them, soft prompt and cut prompts included", async () => {
    const words = wordIds(tok, ["the", "and", "a"]);
    expect(words.every((ids) => ids.length === 1)).toBe(true);
    const prompts = items.map((x) => tok.encode(x.prompt));
    const plain = await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "forward", nll: true });
    const prefixed = await ForwardModel.create(ortNodeRuntime(), config, weights, {
      kind: "forward",
      nll: true,
      inputs: { softPromptTokens: 2 },
    });
    const params = new Map([["soft_prompt", Float32Array.from({ length: 2 * config.hiddenSize }, (_, i) => 0.1 * Math.sin(i))]]);
    for (const [model, extra] of [
      [plain, {}],
      [prefixed, { params }],
    ] as const)
      for (const maxTokens of [64, 5])
        for (const batchSize of [1, 3]) {
          const opts = { maxTokens, batchSize, ...extra };
          const rows = scoresOfLabelRows(
            await exampleNlls(model, labelRows(prompts, words, maxTokens), batchSize, undefined, extra.params),
            3,
          );
          const got = await labelScores(model, prompts, words, opts);
          expect(got).toHaveLength(prompts.length);
          expect(maxAbsDiff(got.flat(), rows.flat())).toBeLessThan(1e-4);
        }
    // Passes and what each copies out: one a prompt with its logits; past LOGITS_BYTES (8 MiB) a row, a row a word.
    const passes: boolean[] = [];
    const run = plain.run.bind(plain);
    plain.run = (input) => (passes.push(input.skipLogits === true), run(input));
    await labelScores(plain, prompts, words, { maxTokens: 64, batchSize: 2 });
    expect(passes).toEqual([false, false]);
    passes.length = 0;
    // A window whose logits fit 2 rows a pass: 2 passes of 2 prompts, whatever the batch size asked.
    const twoRows = Math.floor((8 * 2 ** 20) / (2 * 4 * config.vocabSize));
    await labelScores(plain, prompts, words, { maxTokens: twoRows, batchSize: 4 });
    expect(passes).toEqual([false, false]);
    passes.length = 0;
    // A prefix soft prompt's positions count: the same window with 2 of them fits 1 row a pass.
    const prefixedRun = prefixed.run.bind(prefixed);
    prefixed.run = (input) => (passes.push(input.skipLogits === true), prefixedRun(input));
    await labelScores(prefixed, prompts, words, { maxTokens: twoRows - 1, batchSize: 4, params });
    expect(passes).toEqual([false, false, false, false]);
    passes.length = 0;
    // An empty prompt has no position before the word: the rows a word score it.
    await labelScores(plain, [[], ...prompts.slice(1)], words, { maxTokens: 64, batchSize: 4 });
    expect(passes.every((skip) => skip)).toBe(true);
    passes.length = 0;
    const huge = Math.floor((8 * 2 ** 20) / (4 * config.vocabSize)) + 1;
    await labelScores(plain, prompts, words, { maxTokens: huge, batchSize: 4 });
    expect(passes).toEqual([true, true, true]);
    await plain.release();
    await prefixed.release();
  });

  it("sums each example's NLL over its trained positions; heldOutLoss is their total per token", async () => {
    const model = await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "forward", nll: true });
    const examples = [tok.encode("The quick brown fox jumps"), tok.encode("Each client trains")].map((ids, i) => ({
      ids,
      trained: ids.map((_, t): number => (t >= 1 + i ? 1 : 0)),
    }));
    const nlls = await exampleNlls(model, examples, 2);
    examples.forEach((e, i) => {
      const lp = referenceLogprobs(config, weights, e.ids);
      expect(nlls[i]).toBeCloseTo(-lp.slice(i).reduce((a, b) => a + b, 0), 3);
    });
    const tokens = examples.reduce((n, e) => n + e.trained.reduce((a, b) => a + b, 0), 0);
    const { loss } = await heldOutLoss(model, examples);
    expect(loss).toBeCloseTo((nlls[0]! + nlls[1]!) / tokens, 5);
  });

  it("beforeCompletion puts ids between a prompt and its completion, untrained; a row with nothing trained is left as it is", () => {
    expect(beforeCompletion({ ids: [1, 5, 6, 7, 8], trained: [0, 0, 0, 1, 1] }, [90, 91])).toEqual({
      ids: [1, 5, 6, 90, 91, 7, 8],
      trained: [0, 0, 0, 0, 0, 1, 1],
    });
    const untrained = { ids: [1, 5, 6], trained: [0, 0, 0] };
    expect(beforeCompletion(untrained, [90])).toBe(untrained);
  });
});
