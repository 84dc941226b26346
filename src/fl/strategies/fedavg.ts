import * as v from "valibot";
import { readSlots } from "../server-state.ts";
import type { Strategy } from "../strategy.ts";
import type { TensorMap } from "../tensors.ts";
import { makeStrategy, type ServerUpdate } from "./base.ts";
import { positive } from "./options.ts";

/**
 * FedAvg (McMahan et al. 2017), with the server learning rate η of Reddi et al. 2021's generalised FedAvg:
 *   x_{t+1} = x_t + η·Δ_t,  Δ_t = Σ_k n_k·Δ_k / Σ_k n_k.
 * η = 1 (the default) is Flower's FedAvg: the new global tensors are the weighted mean of the clients'.
 * No server state.
 */
export const FedAvgConfig = v.strictObject({
  name: v.literal("fedavg"),
  serverLearningRate: v.optional(positive, 1),
});
export type FedAvgConfig = v.InferOutput<typeof FedAvgConfig>;

/** x + η·Δ for every tensor; `slots` checked empty. Shared with FedProx. */
export function fedAvgUpdate(serverLearningRate: number): ServerUpdate {
  return (global, meanDelta, state) => {
    readSlots(state, global, []);
    const out: TensorMap = new Map();
    for (const [name, x] of global) {
      const d = meanDelta.get(name)!;
      const next = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) next[i] = x[i]! + serverLearningRate * d[i]!;
      out.set(name, next);
    }
    return { global: out, slots: new Map() };
  };
}

export function createFedAvg(options: FedAvgConfig): Strategy {
  return makeStrategy("fedavg", fedAvgUpdate(options.serverLearningRate));
}
