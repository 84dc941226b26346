import type { FlatLayout, FlatSource } from "./flat-tensors.ts";
import type { TensorMap } from "./tensors.ts";

/**
 * A server strategy, shaped as Flower's `Strategy`: configure-train / aggregate-train /
 * configure-evaluate / aggregate-evaluate. Strategies are pure and hold no mutable state: everything
 * carried from round to round (momentum, moments) lives in the `ServerState` passed in and returned, so
 * the aggregator can persist it and resume after a restart with bit-identical results.
 *
 * Conventions: a client's delta is its trained tensors minus the global tensors it started from;
 * `meanDelta` is the example-weighted mean of the clients' deltas (`weighted-mean.ts`), which equals
 * Flower's "aggregated parameters − current parameters"; Flower's pseudo-gradient is −meanDelta.
 */

/** What the server carries between rounds: plain data, persisted by the aggregator as safetensors. */
export interface ServerState {
  /** Number of rounds aggregated so far: 0 before the first. Aggregating makes it round + 1. */
  round: number;
  /** Optimizer slots, named `${slot}/${tensor}` (see `server-state.ts`); empty before the first round. */
  slots: TensorMap;
}

/** What configure-train sends to each client of a round. */
export interface ClientTrainConfig {
  /** The server round being trained, from 1 (Flower's "server-round"). */
  round: number;
  /** FedProx's μ: the client adds μ·(w − w_global) to its gradients; 0 for every other strategy. */
  proximalMu: number;
}

/** What configure-evaluate sends to each client of an evaluation. */
export interface ClientEvaluateConfig {
  /** The server round whose global tensors are evaluated, from 1. */
  round: number;
}

/** One client's evaluation: its number of examples (the weight) and its metrics. */
export interface EvaluateResult {
  numExamples: number;
  metrics: Readonly<Record<string, number>>;
}

/**
 * One client's update on its way to the sum: its delta as a flat source in the version's layout, and its
 * weight (examples). What a per-update hook sees and may replace, as Flower's DP and robust wrappers do.
 */
export interface ClientUpdate {
  clientId: string;
  layout: FlatLayout;
  source: FlatSource;
  weight: number;
  /** Set by a clipping stage: whether the update's norm was within the bound (adaptive clipping counts these). */
  withinClip?: boolean;
}

/** A stage an update passes through between validation and the accumulator (clipping, noise, decompression, unmasking). */
export type UpdateTransform = (update: ClientUpdate) => ClientUpdate;

export interface Strategy {
  readonly name: string;
  /**
   * Flower's initialize_parameters: the global tensors a federation starts from, given the method's
   * version 0. Absent: the method's version 0 as it is.
   */
  initialParameters?(methodInitial: TensorMap): TensorMap;
  /**
   * A hook on each accepted update before it is accumulated (clipping for differential privacy, a
   * robust rule's screening): returns the update to accumulate. Absent: the update as it came.
   */
  processUpdate?(update: ClientUpdate): ClientUpdate;
  configureTrain(round: number): ClientTrainConfig;
  /**
   * aggregate-train: the new global tensors from the previous global tensors and the weighted mean of the
   * clients' deltas, plus the next server state. Inputs are not modified.
   */
  aggregateTrain(global: TensorMap, meanDelta: TensorMap, state: ServerState): { global: TensorMap; state: ServerState };
  configureEvaluate(round: number): ClientEvaluateConfig;
  /** aggregate-evaluate: the example-weighted mean of each metric. */
  aggregateEvaluate(results: readonly EvaluateResult[]): Record<string, number>;
}
