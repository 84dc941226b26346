// A training graph whose loss ranges over a few token ids (TrainSpec.vocabulary: a verbalizer's label words).
// Its loss must be -log of the softmax over those ids' logits, as the full graph's logits give them, and its
// gradient the one that loss has: d(-log q_t) = d NLL_t - sum_j q_j d NLL_j over the words j, where each
// d NLL_j is the full-vocabulary graph's own gradient (a run with target j at the scored positions). It
// holds for LoRA and for tensors trained in full (offsite-tuning's adapter layers).
import { describe, expect, it } from "vitest";
import { ForwardModel } from "../../../src/engine/forward.ts";
import { expectedTensors } from "../../../src/engine/llama/names.ts";
import type { QuantMode } from "../../../src/engine/quantize.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { TrainStep, type TrainBatch } from "../../../src/engine/train/step.ts";
import { maxAbsDiff } from "../../fixtures/compare.ts";
import { effectiveWeights } from "../../fixtures/quantized.ts";
import { tinyConfig, tinyLora, tinyWeights } from "../../fixtures/tiny-llama.ts";

const modules = ["q_proj", "v_proj"] as const;
const words = [17, 233, 90];
// Two rows; each scores one position with a word target (weights 0.3 and 0.7), the rest weigh nothing.
const ids = [
  [1, 10, 40, 30, 99, 50, 12],
  [1, 21, 41, 61, 71, 5, 0],
];
const scored = [
  { row: 0, at: 6, gold: 1, weight: 0.3 },
  { row: 1, at: 4, gold: 0, weight: 0.7 },
];
describe.each([
  [false, "f32", "lora"],
  [true, "int8", "lora"],
  [false, "f32", "full"],
  [true, "int8", "full"],
] as [boolean, QuantMode, "lora" | "full"][])("tied %s, %s, %s", (tied, quant, trains) => {
  const config = tinyConfig({ hidden: 64, intermediate: 96, heads: 4, kvHeads: 2, layers: 2, vocab: 300, tied });
  const weights = tinyWeights(config, 5);
  const pairs = tinyLora(config, [...modules], 4, 8);
  // Trained in full: layer 1's tensors, float inputs on a quantized base.
  const names = [...expectedTensors(config, [1]).keys()];
  const exact = effectiveWeights(weights, config, quant, trains === "full" ? new Set(names) : new Set());
  const params = new Map<string, Float32Array>();
  if (trains === "full") for (const name of names) params.set(name, weights.get(name)!);
  else for (const [name, p] of pairs) params.set(`${name}.lora_A.weight`, p.a).set(`${name}.lora_B.weight`, p.b);
  const spec = trains === "full" ? { full: names } : { lora: { r: 4, scaling: 2, modules: [...modules] } };

  it("the loss is the verbalizer cross-entropy and its gradient that loss's (1e-4)", async () => {
    const rows = (target: (s: (typeof scored)[number]) => number, weight: (s: (typeof scored)[number]) => number): TrainBatch => ({
      ids,
      targets: ids.map((r, b) =>
        r
          .map((_, t) => (t < r.length - 1 ? r[t + 1]! : 0))
          .map((x, t) => {
            const s = scored.find((s) => s.row === b && s.at === t);
            return s ? target(s) : x;
          }),
      ),
      lossWeights: ids.map((r, b) =>
        r.map((_, t) => {
          const s = scored.find((s) => s.row === b && s.at === t);
          return s ? weight(s) : 0;
        }),
      ),
    });
    // The reference: q over the words from the full logits, in float64.
    const forward = await ForwardModel.create(ortNodeRuntime(), config, exact, {
      kind: "forward",
      ...(trains === "lora" ? { lora: pairs } : {}),
    });
    const { logits } = await forward.run({ ids });
    await forward.release();
    const V = config.vocabSize;
    const T = ids[0]!.length;
    const q = scored.map((s) => {
      const z = words.map((w) => logits![(s.row * T + s.at) * V + w]!);
      const max = Math.max(...z);
      const e = z.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / sum);
    });
    const expected = scored.reduce((sum, s, i) => sum - s.weight * Math.log(q[i]![s.gold]!), 0);

    const restricted = await TrainStep.create(ortNodeRuntime(), config, weights, {
      kind: "train",
      spec: { ...spec, vocabulary: words },
      quant,
    });
    const got = await restricted.run(
      rows(
        (s) => words[s.gold]!,
        (s) => s.weight,
      ),
      params,
    );
    await restricted.release();
    expect(Math.abs(got.loss - expected) / expected).toBeLessThan(1e-4);

    const full = await TrainStep.create(ortNodeRuntime(), config, exact, { kind: "train", spec, quant: "f32" });
    const reference = new Map<string, Float64Array>();
    for (const [j, w] of words.entries()) {
      const r = await full.run(
        rows(
          () => w,
          (s) => s.weight * ((j === s.gold ? 1 : 0) - q[scored.indexOf(s)]![j]!),
        ),
        params,
      );
      for (const [name, g] of r.grads) {
        const acc = reference.get(name) ?? new Float64Array(g.length);
        g.forEach((x, k) => (acc[k]! += x));
        reference.set(name, acc);
      }
    }
    await full.release();
    for (const [name, g] of reference) {
      const scale = Math.max(...g.map(Math.abs));
      expect(scale, name).toBeGreaterThan(0);
      expect(maxAbsDiff(got.grads.get(name)!, g) / scale, name).toBeLessThan(1e-4);
    }
  });
});

it("refuses a vocabulary of fewer than two distinct ids in range", async () => {
  const config = tinyConfig({ vocab: 300 });
  for (const vocabulary of [[5], [5, 5], [5, 300]])
    await expect(
      TrainStep.create(ortNodeRuntime(), config, tinyWeights(config), {
        kind: "train",
        spec: { lora: { r: 2, scaling: 1, modules: ["q_proj"] }, vocabulary },
      }),
    ).rejects.toThrow(/a training vocabulary needs at least 2 distinct token ids in \[0, 300\)/);
});
