// The client memory meter (bench/lib/workerd-memory.ts) on two random models: a client's LoRA round adds
// memory to its workerd process, and more for a model with more weights (at least their size once more).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientMemoryMeter, type ClientMemory } from "../../bench/lib/workerd-memory.ts";
import { toHfConfig, type LlamaConfig } from "../../src/engine/config.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

let meter: ClientMemoryMeter;

beforeAll(async () => {
  meter = await ClientMemoryMeter.start();
}, 60_000);

afterAll(async () => {
  await meter?.dispose();
});

/** One round of LoRA (one step) on a random model of config `c`; the weights' size in MiB. */
async function loraRound(c: LlamaConfig): Promise<ClientMemory & { weightsMiB: number }> {
  const weights = tinyWeights(c);
  const memory = await meter.measure({
    modelFiles: hfModelFiles(c, weights, tinyTokenizerJson(c.vocabSize), { tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" } }),
    partition: [{ prompt: "The fox trains.", completion: " It averages." }],
    federation: {
      model: { name: "tiny", config: toHfConfig(c), quant: "f32" },
      method: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] },
      local: { steps: 1, batchSize: 1, lr: 1e-3, maxTokens: 16 },
    },
  });
  return { ...memory, weightsMiB: [...weights.values()].reduce((n, w) => n + w.byteLength, 0) / 2 ** 20 };
}

describe("a client's memory in workerd", () => {
  it("is positive for a round, and grows with the model by at least its weights", async () => {
    const small = await loraRound(tinyConfig({ heads: 4, kvHeads: 2 }));
    const large = await loraRound(tinyConfig({ heads: 4, kvHeads: 2, hidden: 512, intermediate: 1024, layers: 4, vocab: 4096 }));
    expect(small.stepsDone).toBe(1);
    expect(small.peakOverIdleMiB).toBeGreaterThan(0);
    expect(large.weightsMiB - small.weightsMiB).toBeGreaterThan(40);
    expect(large.peakOverIdleMiB - small.peakOverIdleMiB).toBeGreaterThan(large.weightsMiB - small.weightsMiB);
  }, 60_000);
});
