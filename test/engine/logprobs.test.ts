import { describe, expect, it } from "vitest";
import { ForwardModel } from "../../src/engine/forward.ts";
import type { Runtime } from "../../src/engine/runtime.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../../src/engine/runtimes/ort-web.ts";
import { logSoftmax, topK } from "../../src/engine/sampling.ts";
import { scorePrompts } from "../../src/engine/score.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

// Right-padded rows of different lengths, as the endpoint's batcher forms them.
const ids = [
  [1, 5, 9, 200, 17, 3, 250],
  [1, 44, 45, 46, 0, 0, 0],
  [1, 7, 0, 0, 0, 0, 0],
];
const mask = ids.map((row, b) => row.map((_, t) => (t < [7, 4, 2][b]! ? 1 : 0)));
const targets = ids.map((row) => [...row.slice(1), 0]);

const runtimes: [string, () => Runtime][] = [
  ["ort-node", () => ortNodeRuntime()],
  ["ort-web", () => ortWebRuntime()],
];

describe.each(runtimes)("a logprobs graph on %s", (_, makeRuntime) => {
  it("gives the float64 log-probs and top-k that sampling.ts computes from the same logits", async () => {
    const config = tinyConfig({ vocab: 300 });
    const weights = tinyWeights(config, 7);
    const model = await ForwardModel.create(makeRuntime(), config, weights, { kind: "forward", logprobs: true });
    const k = 5;
    const { logits, logprobs } = await model.run({ ids, mask, targets, topK: k });
    const V = config.vocabSize;
    const T = ids[0]!.length;
    const refTarget: number[] = [];
    const refTop: number[] = [];
    const refIds: number[] = [];
    for (const [i, t] of targets.flat().entries()) {
      const lp = logSoftmax(logits.subarray(i * V, (i + 1) * V));
      refTarget.push(lp[t]!);
      for (const [id, v] of topK(lp, k)) {
        refIds.push(id);
        refTop.push(v);
      }
    }
    const s = logprobs!;
    expect(s.k).toBe(k);
    expect(maxAbsDiff(s.target, refTarget)).toBeLessThan(1e-6);
    expect(maxAbsDiff(s.top, refTop)).toBeLessThan(1e-6);
    expect(Array.from(s.topIds, Number)).toEqual(refIds);
    // Each row's last real position: 6, 3 and 1.
    const last = [6, 3, 1].flatMap((t, b) => Array.from(logits.subarray((b * T + t) * V, (b * T + t + 1) * V)));
    expect(Array.from(s.last)).toEqual(last);
    await model.release();
  });

  it("leaves the logits in the session when asked, with the same scores", async () => {
    const config = tinyConfig();
    const model = await ForwardModel.create(makeRuntime(), config, tinyWeights(config, 3), { kind: "forward", logprobs: true });
    const full = await model.run({ ids, mask, targets, topK: 2 });
    const lean = await model.run({ ids, mask, targets, topK: 2, skipLogits: true });
    expect(lean.logits).toHaveLength(0);
    expect(lean.logprobs).toEqual(full.logprobs);
    await model.release();
  });
});

describe("scorePrompts", () => {
  it("scores prompts of different lengths in one batch as each alone, ranking the batch's largest k", async () => {
    const config = tinyConfig();
    const model = await ForwardModel.create(ortNodeRuntime(), config, tinyWeights(config, 9), { kind: "forward", logprobs: true });
    const prompts = [
      { ids: [1, 5, 9, 200, 17], topK: 3 },
      { ids: [1, 44], topK: 0 },
    ];
    const together = await scorePrompts(model, prompts);
    for (const [i, p] of prompts.entries()) {
      const [alone] = await scorePrompts(model, [{ ids: p.ids, topK: 3 }]);
      const got = together[i]!;
      expect(got.k).toBe(3);
      expect(got.target).toHaveLength(p.ids.length);
      expect(maxAbsDiff(got.target, alone!.target)).toBeLessThan(1e-5);
      expect(maxAbsDiff(got.top, alone!.top)).toBeLessThan(1e-5);
      expect(got.topIds).toEqual(alone!.topIds);
      expect(maxAbsDiff(got.last, alone!.last)).toBeLessThan(1e-4);
    }
    await model.release();
  });
});
