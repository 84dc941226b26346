// A FedKSeed client's local work for one round (Qin et al. 2024): forward-only two-point steps along
// directions regenerated from the federation's seed pool, on the tensors the method trains (LoRA pairs or
// whole tensors), the loss being the mean NLL of a batch; it keeps only the per-seed sums of the step
// scalars, which are all it uploads. Resumable like the gradient update: its state is plain data.
import { exampleBatch, type TokenizedExample } from "../../data/examples.ts";
import type { TrainBatch } from "../../engine/train/step.ts";
import { labelScores, verbalizerCrossEntropy } from "../../engine/train/evaluate.ts";
import type { LlamaConfig } from "../../engine/config.ts";
import { ForwardModel } from "../../engine/forward.ts";
import type { TrainSpec, Weights } from "../../engine/llama/graph.ts";
import { expectedTensors, type LinearModule } from "../../engine/llama/names.ts";
import { initLoraParams } from "../../engine/lora/init.ts";
import { loraScaling } from "../../engine/lora/peft.ts";
import type { QuantMode } from "../../engine/quantize.ts";
import type { Runtime } from "../../engine/runtime.ts";
import { roundStream } from "../../engine/sampling.ts";
import type { FederationConfig, FedKSeedMethod } from "../../protocol/federation.ts";
import type { TensorMap } from "../tensors.ts";
import { accumulate, pickSeed, rebuild, seedPool, seedProbabilities, zoStep } from "../zo/fedkseed.ts";
import { drawBatch } from "./local-update.ts";

export interface ZoTask {
  round: number;
  local: FederationConfig["local"];
  method: FedKSeedMethod;
  quant: QuantMode;
  /** The federation's seed: its seed pool and, for LoRA, w0. */
  federationSeed: number;
  /** This client's seed: its batch order and seed draws. */
  seed: number;
  /** With the method's `labels`: each label's words as token ids (" " + label, by the client's tokenizer). */
  labelIds?: number[][];
}

export interface ZoState {
  step: number;
  params: TensorMap;
  /** Per-seed sums of this round's step scalars. */
  sums: Map<number, number>;
  order: number[];
  pass: number;
  lossSum: number;
  /** Steps skipped for a non-finite loss. */
  skipped: number;
}

/** The tensors the method moves, as graph inputs. */
export function zoSpec(method: FedKSeedMethod): TrainSpec {
  const t = method.trains;
  if (t.type === "full") return { full: t.tensors };
  return { lora: { r: t.r, scaling: loraScaling({ r: t.r, alpha: t.alpha, useRslora: t.rslora }), modules: t.targetModules as LinearModule[] } };
}

/** w0: PEFT's initialisation from the federation's seed (as the aggregator would make it), or the base tensors. */
export function zoInitial(c: LlamaConfig, weights: Weights, method: FedKSeedMethod, federationSeed: number): TensorMap {
  const t = method.trains;
  if (t.type === "lora") return initLoraParams(c, t.r, t.targetModules as LinearModule[], federationSeed);
  const shapes = expectedTensors(c);
  return new Map(t.tensors.map((n) => {
    if (!shapes.has(n)) throw new RangeError(`"${n}" is not a tensor of this model`);
    return [n, Float32Array.from(weights.get(n)!)];
  }));
}

/** The global model at a version: w0 - lr * sum_j c_j z_j. */
export function zoGlobal(w0: TensorMap, task: Pick<ZoTask, "method" | "federationSeed" | "local">, cumulative: ReadonlyMap<number, number>): TensorMap {
  return rebuild(w0, seedPool(task.federationSeed, task.method.k), cumulative, task.local.lr, task.method.direction);
}

export function startZo(global: TensorMap): ZoState {
  return { step: 0, params: new Map([...global].map(([k, t]) => [k, Float32Array.from(t)])), sums: new Map(), order: [], pass: 0, lossSum: 0, skipped: 0 };
}

export interface ZoModel {
  config: LlamaConfig;
  weights: Weights;
  runtime: Runtime;
}

/**
 * Up to `maxSteps` more steps. `history` (FedKSeed-Pro): the per-round aggregated scalars of each seed,
 * from which seeds are drawn by importance; uniform draws without it.
 */
export async function zoLocalSteps(model: ZoModel, task: ZoTask, examples: readonly TokenizedExample[], state: ZoState, maxSteps = Infinity, history?: readonly (readonly number[])[]): Promise<ZoState> {
  const m = task.method;
  const pool = seedPool(task.federationSeed, m.k);
  const probabilities = m.pro && history ? seedProbabilities(history, 1) : undefined;
  const forward = await ForwardModel.create(model.runtime, model.config, model.weights, { quant: task.quant, nll: true, inputs: zoSpec(m) });
  const next: ZoState = { ...state, params: state.params, sums: new Map(state.sums), order: [...state.order] };
  const end = Math.min(task.local.steps, state.step + maxSteps);
  while (next.step < end) {
    const batch = drawBatch(next, examples, task);
    const loss = task.labelIds ? verbalizerLoss(forward, batch, task.labelIds, task.local.maxTokens) : completionLoss(forward, exampleBatch(batch));
    // One uniform number per step, from the client's seed, the round and the step: resumable draws.
    const u = roundStream(task.seed, task.round, 1, next.step)();
    const r = await zoStep(next.params, pool, pickSeed(m.k, u, probabilities), loss, { epsilon: m.epsilon, lr: task.local.lr, kind: m.direction });
    next.params = r.params;
    accumulate(next.sums, [r.step]);
    if (r.step.g === null) next.skipped++;
    else next.lossSum += (r.step.lossPlus + r.step.lossMinus) / 2;
    next.step++;
  }
  await forward.release();
  return next;
}

/** The batch's mean NLL over its trained positions, at the given parameters. */
function completionLoss(forward: ForwardModel, b: TrainBatch): (params: TensorMap) => Promise<number> {
  return async (params) => {
    const { nll } = await forward.run({ ids: b.ids, mask: b.mask!, targets: b.targets, params });
    return b.lossWeights.flat().reduce((s, w, i) => s + w * nll![i]!, 0);
  };
}

/** The verbalizer cross-entropy of the batch: its prompts, each label's words after them, the gold label its completion's. */
function verbalizerLoss(forward: ForwardModel, batch: readonly TokenizedExample[], labelIds: readonly (readonly number[])[], maxTokens: number): (params: TensorMap) => Promise<number> {
  const prompts = batch.map((e) => e.ids.slice(0, e.trained.indexOf(1)));
  const gold = batch.map((e) => {
    const completion = e.ids.slice(e.trained.indexOf(1));
    const j = labelIds.findIndex((ids) => ids.every((id, k) => completion[k] === id));
    if (j < 0) throw new RangeError("an example's completion is none of the method's labels: is this a classification task with these labels?");
    return j;
  });
  return async (params) => verbalizerCrossEntropy(await labelScores(forward, prompts, labelIds, { maxTokens, params }), gold);
}

export function zoMetrics(state: ZoState): Record<string, number> {
  return { train_loss: state.lossSum / Math.max(1, state.step - state.skipped), local_steps: state.step, skipped_steps: state.skipped, seeds_used: state.sums.size };
}
