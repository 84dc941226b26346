// Emulator distillation (offsite-tuning, Xiao, Lin and Han 2023, §3.3): the layer-dropped middle is
// trained to act like the full middle it replaces. The student is the emulator with only its kept middle
// layers trainable; its loss is the language-modelling loss plus the normalised MSE between its hidden
// state after the middle and the full model's at the same point (the bottom layers are shared, so both
// middles see the same input). The adapter layers stay as the owner's.
import type { LlamaConfig } from "../../../engine/config.ts";
import { ForwardModel } from "../../../engine/forward.ts";
import type { Weights } from "../../../engine/llama/graph.ts";
import { type BaseTensor, floatOf } from "../../../engine/quantize.ts";
import { expectedTensors } from "../../../engine/llama/names.ts";
import type { Runtime } from "../../../engine/runtime.ts";
import { seededUniform } from "../../../engine/sampling.ts";
import { adamW } from "../../../engine/train/optimizer.ts";
import { TrainStep } from "../../../engine/train/step.ts";
import { Trainer } from "../../../engine/train/trainer.ts";
import { shuffled, windowBatch } from "../../../data/lm-windows.ts";
import { MethodError } from "../errors.ts";
import type { OffsiteLayout, OffsiteSplit } from "./emulator.ts";

export interface DistillOptions {
  steps: number;
  /** Windows per update. */
  batch: number;
  lr: number;
  /** The distillation term's weight beside the LM loss. */
  weight?: number;
  seed?: number;
  onStep?: (step: number, loss: number, distill: number) => void;
}

/** The emulator's weights with its middle layers distilled from the full model on `windows` (token windows of one length). */
export async function distillEmulator(
  runtime: Runtime,
  c: LlamaConfig,
  full: Weights,
  emulator: Weights,
  split: OffsiteSplit,
  layout: OffsiteLayout,
  windows: readonly number[][],
  o: DistillOptions,
): Promise<Map<string, BaseTensor>> {
  const middle = layout.emulator.filter((l) => !layout.adapter.includes(l));
  if (middle.length === 0) throw new MethodError("method_invalid", "distillation needs middle layers in the emulator (middle > 0)");
  const names = [...expectedTensors(c, middle).keys()].filter((n) => n.startsWith("model.layers."));
  // The teacher's hidden state after the full middle: hidden_states[numLayers - top].
  const teacher = await ForwardModel.create(runtime, c, full, { kind: "hidden", after: c.numLayers - split.top });
  const student = await TrainStep.create(runtime, c, emulator, {
    kind: "train",
    spec: { full: names, distill: { afterLayer: middle.at(-1)!, weight: o.weight ?? 1 } },
    layerIndices: layout.emulator,
  });
  const trainer = new Trainer(student, new Map(names.map((n) => [n, Float32Array.from(floatOf(emulator.get(n)!))])), {
    optimizer: adamW({ weightDecay: 0 }),
    schedule: { lr: o.lr, warmupSteps: Math.floor(o.steps / 10), totalSteps: o.steps },
    clip: 1,
  });
  const uniform = seededUniform(o.seed ?? 0);
  let order: number[][] = [];
  for (let s = 0; s < o.steps; s++) {
    if (order.length < o.batch) order = [...order, ...shuffled(windows, uniform)];
    const batch = windowBatch(order.splice(0, o.batch));
    const { hidden } = await teacher.run({ ids: batch.ids });
    const r = await trainer.update([{ ...batch, teacherHidden: hidden! }]);
    o.onStep?.(s + 1, r.loss, r.distillLoss ?? 0);
  }
  await Promise.all([teacher.release(), student.release()]);
  const out = new Map<string, BaseTensor>(emulator);
  for (const [n, t] of trainer.params) out.set(n, t);
  return out;
}
