// Split LoRA over an offloaded frozen trunk: training the layers above a cut from the trunk's hidden
// states (as an endpoint serves them) gives the loss and LoRA gradients of end-to-end training with the
// bottom frozen. No gradient flows to the trunk: the split graph has no input for one.
import { describe, expect, it } from "vitest";
import { windowBatch } from "../../../src/data/lm-windows.ts";
import { ForwardModel } from "../../../src/engine/forward.ts";
import type { QuantMode } from "../../../src/engine/quantize.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { TrainStep } from "../../../src/engine/train/step.ts";
import { maxAbsDiff } from "../../fixtures/compare.ts";
import { tinyConfig, tinyLora, tinyWeights } from "../../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2, layers: 4, tied: true });
const weights = tinyWeights(config, 21);
const batch = windowBatch([
  [1, 10, 20, 30, 40, 50, 60, 70, 80],
  [1, 11, 21, 31, 41, 51, 61, 71, 81],
]);
const modules = ["q_proj", "v_proj", "down_proj"] as const;

describe.each([
  [1, "f32"],
  [2, "f32"],
  [2, "int8"],
] as [number, QuantMode][])("cut after layer %i, %s upper part", (cut, quant) => {
  it("loss and LoRA gradients equal end-to-end training with a frozen bottom (1e-4)", async () => {
    const rt = ortNodeRuntime();
    const spec = { lora: { r: 4, scaling: 2, modules: [...modules], fromLayer: cut } };
    // LoRA pairs with B non-zero, only on the layers above the cut.
    const params = new Map<string, Float32Array>();
    for (const [name, p] of tinyLora(config, [...modules], 4, 8))
      if (Number(name.split(".")[2]) >= cut) params.set(`${name}.lora_A.weight`, p.a).set(`${name}.lora_B.weight`, p.b);

    const whole = await TrainStep.create(rt, config, weights, { kind: "train", spec, quant });
    expect(whole.tensors.map((t) => t.name).sort()).toEqual([...params.keys()].sort());
    const e2e = await whole.run(batch, params);

    // The trunk (at the same precision as the end-to-end bottom) gives hidden states after `cut`
    // layers; the client's graph starts there.
    const trunk = await ForwardModel.create(rt, config, weights, { kind: "hidden", after: cut, quant });
    const { hidden } = await trunk.run({ ids: batch.ids });
    const upper = await TrainStep.create(rt, config, weights, { kind: "split", spec, quant, fromLayer: cut });
    const split = await upper.run({ ...batch, hidden: hidden! }, params);

    expect(Math.abs(split.loss - e2e.loss)).toBeLessThan(1e-4);
    for (const [name, g] of e2e.grads) {
      const s = split.grads.get(name)!;
      expect(maxAbsDiff(s, g) / Math.max(...g.map(Math.abs)), name).toBeLessThan(1e-4);
    }
    expect(e2e.loss).toBeGreaterThan(0);
  });
});

it("refuses a split step without the trunk's hidden states", async () => {
  const step = await TrainStep.create(ortNodeRuntime(), config, weights, {
    kind: "split",
    spec: { lora: { r: 4, scaling: 2, modules: ["q_proj"], fromLayer: 2 } },
    fromLayer: 2,
  });
  await expect(step.run(batch, new Map())).rejects.toMatchObject({
    code: "input_invalid",
    message: expect.stringMatching(/hidden states/),
  });
});
