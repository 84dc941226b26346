// Updates from batches: gradients summed over micro-batches (their loss weights already normalised to
// the whole update), clipped by global norm, then one optimizer step at the scheduled learning rate.
import type { Optimizer } from "./optimizer.ts";
import { clipGradNorm } from "./optimizer.ts";
import { learningRate, type ScheduleOptions } from "./schedule.ts";
import type { TrainBatch, TrainStep } from "./step.ts";

export interface TrainerOptions {
  optimizer: Optimizer;
  schedule: ScheduleOptions;
  /** Max global gradient norm; no clipping when absent. */
  clip?: number;
  /** Adds terms to the summed gradients before clipping (e.g. FedProx's proximal term). */
  gradientHook?: (grads: Map<string, Float32Array>, params: Map<string, Float32Array>) => void;
}

export interface UpdateResult {
  /** The update's loss (sum of the micro-batches' weighted losses). */
  loss: number;
  gradNorm: number;
  lr: number;
  /** The distillation part of `loss`, when the step has one. */
  distillLoss?: number;
}

export class Trainer {
  readonly params: Map<string, Float32Array>;
  private readonly step: TrainStep;
  private readonly opts: TrainerOptions;

  constructor(step: TrainStep, params: Map<string, Float32Array>, opts: TrainerOptions) {
    this.step = step;
    this.params = params;
    this.opts = opts;
  }

  /** Updates done so far (the optimizer's step count, so it resumes with the optimizer state). */
  get updates(): number {
    return this.opts.optimizer.state.step;
  }

  async update(micro: readonly TrainBatch[]): Promise<UpdateResult> {
    let loss = 0;
    let distillLoss: number | undefined;
    let sum: Map<string, Float32Array> | null = null;
    for (const batch of micro) {
      const r = await this.step.run(batch, this.params);
      loss += r.loss;
      if (r.distillLoss !== undefined) distillLoss = (distillLoss ?? 0) + r.distillLoss;
      if (!sum) sum = new Map([...r.grads].map(([k, g]) => [k, Float32Array.from(g)]));
      else for (const [k, g] of r.grads) sum.get(k)!.forEach((_, i, a) => (a[i]! += g[i]!));
    }
    if (!sum) throw new Error("an update needs at least one micro-batch");
    this.opts.gradientHook?.(sum, this.params);
    for (const [k, g] of sum)
      if (!g.every(Number.isFinite)) throw new Error(`non-finite gradient for ${k} (loss ${loss}); lower the learning rate`);
    const gradNorm =
      this.opts.clip === undefined
        ? Math.sqrt([...sum.values()].reduce((s, g) => s + g.reduce((a, x) => a + x * x, 0), 0))
        : clipGradNorm(sum, this.opts.clip);
    const lr = learningRate(this.updates, this.opts.schedule);
    this.opts.optimizer.step(this.params, sum, lr);
    return { loss, gradNorm, lr, ...(distillLoss === undefined ? {} : { distillLoss }) };
  }
}
