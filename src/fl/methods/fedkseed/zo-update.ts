// A FedKSeed client's local work for one round (Qin et al. 2024): forward-only two-point steps along
// directions regenerated from the federation's seed pool, on the tensors the method trains (LoRA pairs or
// whole tensors), the loss being the mean NLL of a batch; it keeps only the per-seed sums of the step
// scalars, which are all it uploads. Resumable like the gradient update: its state is plain data.
import type { TokenizedExample } from "../../../data/examples.ts";
import { exampleNlls, labelRows, promptsAndGold, scoresOfLabelRows, verbalizerCrossEntropy } from "../../../engine/train/evaluate.ts";
import type { LlamaConfig } from "../../../engine/config.ts";
import { ForwardModel } from "../../../engine/forward.ts";
import type { InputSpec, Weights } from "../../../engine/llama/graph.ts";
import { expectedTensors, type LinearModule } from "../../../engine/llama/names.ts";
import { initLoraParams } from "../../../engine/lora/init.ts";
import { loraScaling } from "../../../engine/lora/peft.ts";
import { floatOf } from "../../../engine/quantize.ts";
import type { QuantMode } from "../../../engine/quantize.ts";
import { keptSession, type KeptSessions, type Runtime } from "../../../engine/runtime.ts";
import { roundStream } from "../../../engine/sampling.ts";
import type { FederationConfig } from "../../../protocol/federation.ts";
import type { FedKSeedConfig, ZoTrains } from "./config.ts";
import type { TensorMap } from "../../tensors.ts";
import { accumulate, moveTensors, pickSeed, rebuild, seedPool, seedProbabilities, zoStep, type Mover } from "./seed-pool.ts";
import { drawBatch } from "../../client/local-update.ts";

export interface ZoTask {
  round: number;
  local: FederationConfig["local"];
  method: FedKSeedConfig;
  quant: QuantMode;
  /** The federation's seed: its seed pool and, for LoRA, w0. */
  federationSeed: number;
  /** This client's seed: its batch order and seed draws. */
  seed: number;
  /** With the method's `labels`: each label as token ids (" " + label, by the client's tokenizer), to find an example's gold label. */
  labelIds?: number[][];
  /** The words scored for the labels (the method's labelWords), as token ids; defaults to labelIds. */
  wordIds?: number[][];
}

export interface ZoState<P = TensorMap> {
  step: number;
  /** The point the client is at: tensors, or seed terms naming a point at an endpoint. */
  params: P;
  /** Per-seed sums of this round's step scalars. */
  sums: Map<number, number>;
  order: number[];
  pass: number;
  lossSum: number;
  /** Steps skipped for a non-finite loss. */
  skipped: number;
}

/** The tensors the method moves, as graph inputs. */
export function zoSpec(t: ZoTrains): InputSpec {
  if (t.type === "full") return { full: t.tensors };
  return {
    lora: { r: t.r, scaling: loraScaling({ r: t.r, alpha: t.alpha, useRslora: t.rslora }), modules: t.targetModules as LinearModule[] },
  };
}

/** w0: PEFT's initialisation from the federation's seed (as the aggregator would make it), or the base tensors. */
export function zoInitial(c: LlamaConfig, weights: Weights, t: ZoTrains, federationSeed: number): TensorMap {
  if (t.type === "lora") return initLoraParams(c, t.r, t.targetModules as LinearModule[], federationSeed);
  const shapes = expectedTensors(c);
  return new Map(
    t.tensors.map((n) => {
      if (!shapes.has(n)) throw new RangeError(`"${n}" is not a tensor of this model`);
      return [n, Float32Array.from(floatOf(weights.get(n)!))];
    }),
  );
}

/** The global model at a version: w0 - lr * sum_j c_j z_j. */
export function zoGlobal(
  w0: TensorMap,
  task: Pick<ZoTask, "method" | "federationSeed" | "local">,
  cumulative: ReadonlyMap<number, number>,
): TensorMap {
  return rebuild(w0, seedPool(task.federationSeed, task.method.k), cumulative, task.local.lr, task.method.direction);
}

export function startZo<P = TensorMap>(params: P): ZoState<P> {
  const copy = params instanceof Map ? (new Map([...params].map(([k, t]) => [k, Float32Array.from(t as Float32Array)])) as P) : params;
  return { step: 0, params: copy, sums: new Map(), order: [], pass: 0, lossSum: 0, skipped: 0 };
}

export interface ZoModel {
  config: LlamaConfig;
  weights: Weights;
  runtime: Runtime;
  /** Sessions kept between calls (the forward graph's by its options); without them, each call builds and releases its own. */
  sessions?: KeptSessions;
}

/**
 * Where a FedKSeed client's losses come from: each row's summed NLL over its trained tokens at a point
 * `P` (tensors held locally, or seed terms naming a point at an endpoint), and how a step moves `P`.
 */
export interface ZoEvaluator<P> {
  rowNlls(rows: readonly TokenizedExample[], at: P): Promise<number[]>;
  move: Mover<P>;
}

/** The local evaluator: a forward graph taking the moved tensors as inputs. */
export function localZoEvaluator(forward: ForwardModel, kind: FedKSeedConfig["direction"]): ZoEvaluator<TensorMap> {
  return { rowNlls: (rows, at) => exampleNlls(forward, rows, 8, undefined, at), move: moveTensors(kind) };
}

/**
 * Up to `maxSteps` more steps. `history` (FedKSeed-Pro): the per-round aggregated scalars of each seed,
 * from which seeds are drawn by importance; uniform draws without it.
 */
export async function zoLocalSteps(
  model: ZoModel,
  task: ZoTask,
  examples: readonly TokenizedExample[],
  state: ZoState,
  maxSteps = Infinity,
  history?: readonly (readonly number[])[],
): Promise<ZoState> {
  const graph = { kind: "forward", quant: task.quant, nll: true, inputs: zoSpec(task.method.trains) } as const;
  const { session: forward, release } = await keptSession(model.sessions, JSON.stringify(graph), () =>
    ForwardModel.create(model.runtime, model.config, model.weights, graph),
  );
  try {
    return await zoSteps(localZoEvaluator(forward, task.method.direction), task, examples, state, maxSteps, history);
  } finally {
    await release();
  }
}

/** The steps themselves, wherever the losses come from. */
export async function zoSteps<P>(
  ev: ZoEvaluator<P>,
  task: ZoTask,
  examples: readonly TokenizedExample[],
  state: ZoState<P>,
  maxSteps = Infinity,
  history?: readonly (readonly number[])[],
): Promise<ZoState<P>> {
  const m = task.method;
  const pool = seedPool(task.federationSeed, m.k);
  const probabilities = m.pro && history ? seedProbabilities(history, 1) : undefined;
  const next: ZoState<P> = { ...state, sums: new Map(state.sums), order: [...state.order] };
  const end = Math.min(task.local.steps, state.step + maxSteps);
  while (next.step < end) {
    const batch = drawBatch(next, examples, task);
    const loss = task.labelIds
      ? verbalizerLoss(ev, batch, task.labelIds, task.wordIds ?? task.labelIds, task.local.maxTokens)
      : completionLoss(ev, batch);
    // One uniform number per step, from the client's seed, the round and the step: resumable draws.
    const u = roundStream(task.seed, task.round, 1, next.step)();
    const r = await zoStep(
      next.params,
      pool,
      pickSeed(m.k, u, probabilities),
      loss,
      { epsilon: m.epsilon, lr: task.local.lr, kind: m.direction },
      ev.move,
    );
    next.params = r.params;
    accumulate(next.sums, [r.step]);
    if (r.step.g === null) next.skipped++;
    else next.lossSum += (r.step.lossPlus + r.step.lossMinus) / 2;
    next.step++;
  }
  return next;
}

/** The batch's mean NLL over its trained positions. */
function completionLoss<P>(ev: ZoEvaluator<P>, batch: readonly TokenizedExample[]): (at: P) => Promise<number> {
  const trained = batch.reduce((s, e) => s + e.trained.reduce((a, b) => a + b, 0), 0);
  return async (at) => (await ev.rowNlls(batch, at)).reduce((a, b) => a + b, 0) / trained;
}

/** The verbalizer cross-entropy of the batch: its prompts, each label's word after them, the gold label its completion's. */
function verbalizerLoss<P>(
  ev: ZoEvaluator<P>,
  batch: readonly TokenizedExample[],
  labelIds: readonly (readonly number[])[],
  wordIds: readonly (readonly number[])[],
  maxTokens: number,
): (at: P) => Promise<number> {
  const { prompts, gold } = promptsAndGold(batch, labelIds);
  const rows = labelRows(prompts, wordIds, maxTokens);
  return async (at) => verbalizerCrossEntropy(scoresOfLabelRows(await ev.rowNlls(rows, at), wordIds.length), gold);
}

export function zoMetrics(state: ZoState<unknown>): Record<string, number> {
  return {
    train_loss: state.lossSum / Math.max(1, state.step - state.skipped),
    local_steps: state.step,
    skipped_steps: state.skipped,
    seeds_used: state.sums.size,
  };
}
