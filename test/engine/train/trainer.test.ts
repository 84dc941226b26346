import { describe, expect, it } from "vitest";
import { exampleBatch, tokenizeExample } from "../../../src/data/examples.ts";
import { initLoraParams } from "../../../src/engine/lora/init.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../../../src/engine/runtimes/ort-web.ts";
import { adamW, sgd } from "../../../src/engine/train/optimizer.ts";
import { TrainStep } from "../../../src/engine/train/step.ts";
import { Trainer } from "../../../src/engine/train/trainer.ts";
import { loadTokenizer } from "../../../src/engine/tokenizer/load.ts";
import { tinyTokenizerJson } from "../../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 8);
const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize));
const examples = [
  { prompt: "The fox", completion: " jumps over the dog." },
  { text: "Each client trains, the server averages." },
  { prompt: "Federated", completion: " learning." },
  { text: "The dog sleeps in the sun." },
].map((e) => tokenizeExample(e, tok, 2, 64));
const spec = { lora: { r: 4, scaling: 2, modules: ["q_proj", "v_proj"] as ("q_proj" | "v_proj")[] } };

describe("Trainer", () => {
  it("accumulating two micro-batches gives the same update as one batch of both", async () => {
    const step = await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "train", spec });
    const run = async (micro: ReturnType<typeof exampleBatch>[]) => {
      const params = initLoraParams(config, 4, spec.lora.modules, 1);
      for (const v of params.values()) v.forEach((_, i, a) => (a[i] = a[i] || 0.01 * Math.sin(i)));
      const t = new Trainer(step, params, { optimizer: sgd(), schedule: { lr: 0.1, warmupSteps: 0, totalSteps: 1 } });
      const r = await t.update(micro);
      return { r, params };
    };
    const total = examples.reduce((s, e) => s + e.trained.reduce((a, b) => a + b, 0), 0);
    const whole = await run([exampleBatch(examples)]);
    const split = await run([exampleBatch(examples.slice(0, 2), total), exampleBatch(examples.slice(2), total)]);
    expect(split.r.loss).toBeCloseTo(whole.r.loss, 5);
    for (const [k, v] of whole.params) split.params.get(k)!.forEach((x, i) => expect(x).toBeCloseTo(v[i]!, 5));
  });

  it.each([
    ["ort-node", ortNodeRuntime],
    ["ort-web", ortWebRuntime],
  ] as const)("lowers the training loss with AdamW on %s, int8 base", async (_, rt) => {
    const step = await TrainStep.create(rt(), config, weights, {
      kind: "train",
      spec: { lora: { ...spec.lora, dropout: 0.1 } },
      quant: "int8",
    });
    const trainer = new Trainer(step, initLoraParams(config, 4, spec.lora.modules, 2), {
      optimizer: adamW(),
      schedule: { lr: 1e-2, warmupSteps: 2, totalSteps: 30 },
      clip: 1,
    });
    const batch = exampleBatch(examples);
    const losses: number[] = [];
    for (let i = 0; i < 30; i++) losses.push((await trainer.update([batch])).loss);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.7);
  });
});
