// LoRA training steps inside workerd on onnxruntime-web, on an int8 base: the loss falls.
import { describe, expect, it } from "vitest";
import { windowBatch } from "../../src/data/lm-windows.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { adamW } from "../../src/engine/train/optimizer.ts";
import { TrainStep } from "../../src/engine/train/step.ts";
import { Trainer } from "../../src/engine/train/trainer.ts";
import { workerdOrtRuntime } from "../../workers/lib/ort-workerd.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

describe("training inside workerd (onnxruntime-web)", () => {
  it("lowers the loss of a repeated batch over 25 LoRA updates on an int8 base", async () => {
    expect(navigator.userAgent).toBe("Cloudflare-Workers");
    const config = tinyConfig({ heads: 4, kvHeads: 2 });
    const modules = ["q_proj", "v_proj", "down_proj"] as const;
    const step = await TrainStep.create(workerdOrtRuntime(), config, tinyWeights(config, 4), {
      kind: "train",
      spec: { lora: { r: 4, scaling: 2, modules: [...modules] } },
      quant: "int8",
    });
    const trainer = new Trainer(step, initLoraParams(config, 4, modules, 1), {
      optimizer: adamW(),
      schedule: { lr: 1e-2, warmupSteps: 2, totalSteps: 25 },
      clip: 1,
    });
    const batch = windowBatch([
      [1, 10, 20, 30, 40, 50, 60, 70, 80],
      [1, 11, 21, 31, 41, 51, 61, 71, 81],
    ]);
    const losses: number[] = [];
    for (let i = 0; i < 25; i++) losses.push((await trainer.update([batch])).loss);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.6);
    await step.release();
  });
});
