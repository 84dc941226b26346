// A client's local work for one round of a gradient method: training its plan's tensors from the global
// version on its own examples, then the delta (trained minus global, by key) with its example count and
// metrics. The work is resumable: `LocalState` is plain data, so a Worker can run some steps, persist, and go on in its next
// invocation without losing the optimizer state (a Worker's CPU time per invocation is bounded).
import type { TokenizedExample } from "../../data/examples.ts";
import type { Example } from "../../data/jsonl.ts";
import { exampleBatch } from "../../data/examples.ts";
import { shuffled } from "../../data/lm-windows.ts";
import type { LlamaConfig } from "../../engine/config.ts";
import type { SplitGraph, TrainGraph, Weights } from "../../engine/llama/graph.ts";
import { graphName } from "../../engine/lora/peft.ts";
import type { QuantMode } from "../../engine/quantize.ts";
import { keptSession, type KeptSessions, type Runtime } from "../../engine/runtime.ts";
import { roundStream } from "../../engine/sampling.ts";
import { adamW, type OptimizerState } from "../../engine/train/optimizer.ts";
import { TrainStep } from "../../engine/train/step.ts";
import { Trainer } from "../../engine/train/trainer.ts";
import type { FederationConfig } from "../../protocol/federation.ts";
import { addProximalGradient } from "../strategies/fedprox.ts";
import type { TensorMap } from "../tensors.ts";
import { padStates, trunkStates, type TrunkCache, type TrunkEndpoint } from "./trunk-states.ts";

/** What a gradient method trains and which layers its graph runs (its client side's plan). */
export interface GradientPlan {
  /** The training graph: from a cut (the trunk's states are inputs), or on an emulator's layers by original index. */
  graph: TrainGraph | SplitGraph;
  /** The decoder layers to load (all when absent): no client holds weights its graph never runs. */
  layers?: number[];
  /** The cut, when the trunk below it runs at an endpoint. */
  cut?: number;
  /**
   * A name suffix of parameters kept as the version has them (FFA-LoRA's ".lora_A.weight"): no gradient
   * moves them (AdamW skips a parameter without one) and the upload leaves them out.
   */
  frozen?: string;
  /**
   * Zeroes, in place, the gradient of the part of a parameter that stays as the version has it (FLoRA's
   * frozen stack of earlier ranks), so it neither moves nor counts in the clipped norm.
   */
  mask?: (name: string, grad: Float32Array) => void;
  /** Adds, in place, a regulariser's gradient at the parameters (HetLoRA's tail penalty), by graph name. */
  penalty?: (grads: TensorMap, params: TensorMap) => void;
  /** The rows trained instead of the client's tokenized examples, one per record (LoRA's label-word rows). */
  examples?: (raw: readonly Example[]) => TokenizedExample[];
}

export interface LocalTask {
  round: number;
  proximalMu: number;
  local: FederationConfig["local"];
  /** Its dropout is seeded by the client and the round (the caller's seed + round). */
  plan: GradientPlan;
  quant: QuantMode;
  seed: number;
}

export interface LocalState {
  /** Updates done so far. */
  step: number;
  /** Trained tensors, by graph input name. */
  params: TensorMap;
  optimizer: OptimizerState;
  /** Examples still to draw from the current shuffled pass (indices), and the pass number. */
  order: number[];
  pass: number;
  lossSum: number;
}

export function startLocal(global: TensorMap): LocalState {
  const params: TensorMap = new Map([...global].map(([k, t]) => [graphName(k), Float32Array.from(t)]));
  return { step: 0, params, optimizer: { kind: "adamw", step: 0, slots: new Map() }, order: [], pass: 0, lossSum: 0 };
}

export interface LocalModel {
  config: LlamaConfig;
  /** The base weights, read only when a session has to be built. */
  weights: () => Promise<Weights>;
  runtime: Runtime;
  /** Sessions kept between calls (the training step's by plan and quantization); without them, each call builds and releases its own. */
  sessions?: KeptSessions;
}

/** An offloaded frozen trunk: its endpoint and the client's cache of its states. */
export interface Trunk {
  endpoint: TrunkEndpoint;
  cache: TrunkCache;
}

/** Runs up to `maxSteps` more updates of the task (all remaining when absent); returns the new state. */
export async function runLocalSteps(
  model: LocalModel,
  task: LocalTask,
  global: TensorMap,
  examples: readonly TokenizedExample[],
  state: LocalState,
  maxSteps = Infinity,
  trunk?: Trunk,
): Promise<LocalState> {
  const { plan } = task;
  const key = JSON.stringify([plan, task.quant]);
  const { session: step, release } = await keptSession(model.sessions, key, async () =>
    TrainStep.create(model.runtime, model.config, await model.weights(), { ...plan.graph, quant: task.quant }),
  );
  const globalParams: TensorMap = new Map([...global].map(([k, t]) => [graphName(k), t]));
  const copy = (t: TensorMap): TensorMap => new Map([...t].map(([k, v]) => [k, Float32Array.from(v)]));
  const next: LocalState = {
    ...state,
    params: copy(state.params),
    optimizer: { ...state.optimizer, slots: copy(state.optimizer.slots) },
    order: [...state.order],
  };
  const trainer = new Trainer(step, next.params, {
    optimizer: adamW({ weightDecay: 0 }, next.optimizer),
    schedule: { lr: task.local.lr, warmupSteps: 0, totalSteps: task.local.steps },
    clip: 1,
    gradientHook: (grads: TensorMap, params: TensorMap) => {
      if (task.proximalMu > 0) addProximalGradient(grads, params, globalParams, task.proximalMu);
      plan.penalty?.(grads, params);
      // After the proximal term (it wants every parameter): a frozen parameter's gradient goes, so it neither
      // moves nor counts in the clipped norm.
      if (plan.frozen) for (const name of [...grads.keys()]) if (name.endsWith(plan.frozen)) grads.delete(name);
      if (plan.mask) for (const [name, g] of grads) plan.mask(name, g);
    },
  });
  const end = Math.min(task.local.steps, state.step + maxSteps);
  while (next.step < end) {
    const batch = drawBatch(next, examples, task);
    const b = exampleBatch(batch);
    if (trunk) {
      // States of the unpadded inputs; padded positions get zeros, which no real position attends to.
      const states = await trunkStates(
        trunk.endpoint,
        trunk.cache,
        plan.cut!,
        batch.map((e) => e.ids.slice(0, -1)),
      );
      b.hidden = padStates(states, b.ids[0]!.length, model.config.hiddenSize);
    }
    next.lossSum += (await trainer.update([b])).loss;
    next.step++;
  }
  await release();
  return next;
}

/**
 * The next batch of the task's seeded passes over the examples (each pass a shuffle seeded by the client,
 * the round and the pass), so a resumed run draws the batches an unbroken run would. Advances `order`/`pass`.
 */
export function drawBatch<E>(
  at: { order: number[]; pass: number },
  examples: readonly E[],
  task: Pick<LocalTask, "seed" | "round" | "local">,
): E[] {
  if (at.order.length < task.local.batchSize)
    at.order.push(...shuffled([...examples.keys()], roundStream(task.seed, task.round, 0, at.pass++)));
  return at.order.splice(0, Math.min(task.local.batchSize, examples.length)).map((i) => examples[i]!);
}

export interface LocalResult {
  /** Trained minus global, by PEFT key. */
  delta: TensorMap;
  numExamples: number;
  metrics: Record<string, number>;
}

export function localResult(global: TensorMap, state: LocalState, numExamples: number, frozen?: string): LocalResult {
  const delta: TensorMap = new Map();
  for (const [key, g] of global) {
    if (frozen && key.endsWith(frozen)) continue;
    const p = state.params.get(graphName(key))!;
    delta.set(
      key,
      p.map((x, i) => x - g[i]!),
    );
  }
  return { delta, numExamples, metrics: { train_loss: state.lossSum / Math.max(1, state.step), local_steps: state.step } };
}
