// A quantized graph keeps its float weights only while they are multiplied: the int8 head in chunks of
// the vocabulary (cut cross-entropy in training graphs, chunk logits concatenated in forward graphs) and
// frozen weights dequantized again in the backward pass. None of it may change a number: each graph
// must give the loss, gradients and logits of a float graph over the same (dequantized) weights.
import { describe, expect, it } from "vitest";
import { windowBatch } from "../../../src/data/lm-windows.ts";
import { ForwardModel } from "../../../src/engine/forward.ts";
import type { QuantMode } from "../../../src/engine/quantize.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../../../src/engine/runtimes/ort-web.ts";
import { TrainStep } from "../../../src/engine/train/step.ts";
import { maxAbsDiff } from "../../fixtures/compare.ts";
import { effectiveWeights } from "../../fixtures/quantized.ts";
import { tinyConfig, tinyLora, tinyWeights } from "../../fixtures/tiny-llama.ts";

// 2,600 x 256 float32 is 2.7 MB: a head of two chunks. Targets fall in both.
const modules = ["q_proj", "v_proj", "down_proj"] as const;
const rows = [
  [1, 10, 2400, 30, 2599, 50, 1300, 70, 80],
  [1, 2001, 21, 1999, 41, 2598, 61, 71, 0],
];
const batch = windowBatch(rows);
const rel = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) / Math.max(...b.map(Math.abs));

describe.each([
  [true, "int8"],
  [false, "int4"],
] as [boolean, QuantMode][])("tied %s, %s", (tied, quant) => {
  const config = tinyConfig({ hidden: 256, intermediate: 384, heads: 4, kvHeads: 2, layers: 3, vocab: 2600, tied });
  const weights = tinyWeights(config, 4);
  const exact = effectiveWeights(weights, config, quant);
  const params = new Map<string, Float32Array>();
  for (const [name, p] of tinyLora(config, [...modules], 4, 8)) params.set(`${name}.lora_A.weight`, p.a).set(`${name}.lora_B.weight`, p.b);

  it.each([
    ["ort-node", ortNodeRuntime],
    ["ort-web, weights as external data", ortWebRuntime],
  ])("%s: loss and LoRA gradients equal a float graph's on the dequantized weights (1e-4)", async (_, runtime) => {
    const spec = { lora: { r: 4, scaling: 2, modules: [...modules] } };
    const quantized = await TrainStep.create(runtime(), config, weights, { kind: "train", spec, quant });
    const float = await TrainStep.create(ortNodeRuntime(), config, exact, { kind: "train", spec, quant: "f32" });
    const [q, f] = [await quantized.run(batch, params), await float.run(batch, params)];
    expect(Math.abs(q.loss - f.loss) / f.loss).toBeLessThan(1e-5);
    expect(rel(q.nll, f.nll)).toBeLessThan(1e-4);
    for (const [name, g] of f.grads) expect(rel(q.grads.get(name)!, g), name).toBeLessThan(1e-4);
    await Promise.all([quantized.release(), float.release()]);
  });

  it("a split graph above a cut equals the float graph's upper part", async () => {
    const spec = { lora: { r: 4, scaling: 2, modules: [...modules], fromLayer: 2 } };
    const upper = new Map([...params].filter(([n]) => Number(n.split(".")[2]) >= 2));
    const trunk = await ForwardModel.create(ortNodeRuntime(), config, exact, { kind: "hidden", after: 2 });
    const { hidden } = await trunk.run({ ids: batch.ids });
    const q = await (await TrainStep.create(ortWebRuntime(), config, weights, { kind: "split", spec, quant, fromLayer: 2 })).run(
      { ...batch, hidden: hidden! },
      upper,
    );
    const f = await (await TrainStep.create(ortNodeRuntime(), config, exact, { kind: "split", spec, fromLayer: 2 })).run(
      { ...batch, hidden: hidden! },
      upper,
    );
    expect(Math.abs(q.loss - f.loss) / f.loss).toBeLessThan(1e-5);
    for (const [name, g] of f.grads) expect(rel(q.grads.get(name)!, g), name).toBeLessThan(1e-4);
  });

  it("forward logits, chunk by chunk, equal the float graph's", async () => {
    const ids = rows.map((r) => r.slice(0, 8));
    const q = await ForwardModel.create(ortWebRuntime(), config, weights, { kind: "forward", quant });
    const f = await ForwardModel.create(ortNodeRuntime(), config, exact, { kind: "forward" });
    expect(rel((await q.run({ ids })).logits!, (await f.run({ ids })).logits!)).toBeLessThan(1e-5);
  });
});
