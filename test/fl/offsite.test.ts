import { describe, expect, it } from "vitest";
import { windowBatch } from "../../src/data/lm-windows.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import type { Weights } from "../../src/engine/llama/graph.ts";
import { floatOf } from "../../src/engine/quantize.ts";
import { parseLlamaConfig, toHfConfig } from "../../src/engine/config.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { adamW } from "../../src/engine/train/optimizer.ts";
import { TrainStep } from "../../src/engine/train/step.ts";
import { Trainer } from "../../src/engine/train/trainer.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { distillEmulator } from "../../src/fl/methods/offsite/distill.ts";
import { adapterTensorNames, emulatorWeights, offsiteLayout, plugIn } from "../../src/fl/methods/offsite/emulator.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { referenceLogits } from "../reference/llama-f64.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2, layers: 8 });
const full = tinyWeights(config, 41);
const split = { bottom: 1, top: 2, middle: 3 };
const layout = offsiteLayout(config.numLayers, split);
const ids = [[1, 40, 41, 42, 43, 44]];

describe("offsite-tuning layout", () => {
  it("keeps the adapter's layers and a uniformly dropped middle, first and last middle layers included", () => {
    // M = 5 middle layers (1..5), m = 3: round(i * 4 / 2) = 0, 2, 4 -> layers 1, 3, 5.
    expect(layout).toEqual({ adapter: [0, 6, 7], emulator: [0, 1, 3, 5, 6, 7] });
    expect(offsiteLayout(12, { bottom: 2, top: 2, middle: 4 }).emulator).toEqual([0, 1, 2, 4, 7, 9, 10, 11]);
    expect(() => offsiteLayout(8, { bottom: 4, top: 5, middle: 0 })).toThrow(/exceeds/);
    expect(() => offsiteLayout(8, { bottom: 1, top: 2, middle: 1 })).toThrow(/first and last/);
  });
});

describe("the emulator", () => {
  it("runs its layers by original index: the same logits as a standalone model of those layers", async () => {
    const emu = emulatorWeights(config, full, layout);
    const model = await ForwardModel.create(ortNodeRuntime(), config, emu, { kind: "forward", layerIndices: layout.emulator });
    const { logits } = await model.run({ ids });
    // The emulator as an ordinary 6-layer model, its layers renumbered 0..5.
    const standalone = parseLlamaConfig({ ...toHfConfig(config), num_hidden_layers: layout.emulator.length });
    const renamed = new Map(
      [...emu].map(([n, t]) => [n.replace(/^model\.layers\.(\d+)\./, (_, l) => `model.layers.${layout.emulator.indexOf(Number(l))}.`), t]),
    );
    expect(maxAbsDiff(logits, referenceLogits(standalone, renamed, { ids }))).toBeLessThan(1e-4);
  });

  it("trains the adapter on the emulator, and the trained adapter plugs back into the full model strictly", async () => {
    const emu = emulatorWeights(config, full, layout);
    const names = adapterTensorNames(config, layout);
    expect(names.every((n) => /^model\.layers\.(0|6|7)\./.test(n))).toBe(true);
    const params = new Map(names.map((n) => [n, Float32Array.from(full.get(n)!)]));
    const step = await TrainStep.create(ortNodeRuntime(), config, emu, {
      kind: "train",
      spec: { full: names },
      layerIndices: layout.emulator,
    });
    const trainer = new Trainer(step, params, { optimizer: adamW(), schedule: { lr: 3e-3, warmupSteps: 0, totalSteps: 10 }, clip: 1 });
    const batch = windowBatch([[1, 10, 20, 30, 40, 50, 60, 70, 80]]);
    const losses: number[] = [];
    for (let i = 0; i < 10; i++) losses.push((await trainer.update([batch])).loss);
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);

    const fullModel = async (w: Weights) => (await (await ForwardModel.create(ortNodeRuntime(), config, w)).run({ ids })).logits;
    const original = await fullModel(full);
    // An untrained adapter plugged in changes nothing, bit for bit.
    const untrained = new Map(names.map((n) => [n, floatOf(full.get(n)!)]));
    expect(await fullModel(plugIn(config, full, untrained, layout))).toEqual(original);
    expect(maxAbsDiff(await fullModel(plugIn(config, full, trainer.params, layout)), original)).toBeGreaterThan(1e-3);

    const without = new Map(trainer.params);
    without.delete(names[3]!);
    expect(() => plugIn(config, full, without, layout)).toThrow(new RegExp(`lacks "${names[3]!.replace(/\./g, "\\.")}"`));
    const misshapen = new Map(trainer.params).set(names[0]!, new Float32Array(3));
    expect(() => plugIn(config, full, misshapen, layout)).toThrow(/has 3 values/);
    const extra = new Map(trainer.params).set("model.layers.3.mlp.up_proj.weight", full.get("model.layers.3.mlp.up_proj.weight")!);
    expect(() => plugIn(config, full, extra, layout)).toThrow(/not an adapter tensor/);
  });
});

describe("emulator distillation", () => {
  it("trains only the kept middle layers toward the full middle: the distillation term falls, the adapter stays the owner's", async () => {
    const emu = emulatorWeights(config, full, layout);
    const u = seededUniform(8);
    const windows = Array.from({ length: 16 }, () => Array.from({ length: 9 }, () => 3 + Math.floor(u() * 290)));
    const terms: number[] = [];
    const distilled = await distillEmulator(ortNodeRuntime(), config, full, emu, split, layout, windows, {
      steps: 30,
      batch: 4,
      lr: 1e-3,
      weight: 10,
      onStep: (_, __, d) => terms.push(d),
    });
    expect(terms).toHaveLength(30);
    expect(terms.slice(-5).reduce((a, b) => a + b) / 5).toBeLessThan(0.8 * (terms.slice(0, 5).reduce((a, b) => a + b) / 5));
    for (const [n, t] of distilled) {
      const layer = Number(/^model\.layers\.(\d+)\./.exec(n)?.[1] ?? -1);
      if ([1, 3, 5].includes(layer)) expect(t, n).not.toEqual(emu.get(n));
      else expect(t, n).toEqual(emu.get(n));
    }
    expect([...distilled.keys()].sort()).toEqual([...emu.keys()].sort());
    await expect(
      distillEmulator(
        ortNodeRuntime(),
        config,
        full,
        emulatorWeights(config, full, offsiteLayout(8, { bottom: 1, top: 2, middle: 0 })),
        { bottom: 1, top: 2, middle: 0 },
        offsiteLayout(8, { bottom: 1, top: 2, middle: 0 }),
        windows,
        { steps: 1, batch: 1, lr: 1e-3 },
      ),
    ).rejects.toThrow(/middle layers/);
  });
});
