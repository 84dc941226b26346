import * as v from "valibot";
import { readSlots, writeSlots } from "../server-state.ts";
import type { Strategy } from "../strategy.ts";
import type { TensorMap } from "../tensors.ts";
import { makeStrategy } from "./base.ts";
import { decay, positive } from "./options.ts";

/**
 * FedAvgM (Hsu et al. 2019) as Flower implements it (PyTorch's SGD-with-momentum convention, no
 * dampening, no Nesterov), on the pseudo-gradient g_t = x_t − x̄_t = −Δ_t:
 *   round 1:  m_1 = g_1               (Flower initialises the momentum with the first pseudo-gradient)
 *   round t:  m_t = β·m_{t−1} + g_t
 *   x_{t+1} = x_t − η·m_t
 * With β = 0 no momentum is kept (no slots) and x_{t+1} = x_t + η·Δ_t. Defaults are Flower's: η = 1,
 * β = 0 (which is FedAvg). Slot: "momentum".
 */
export const FedAvgMConfig = v.strictObject({
  name: v.literal("fedavgm"),
  serverLearningRate: v.optional(positive, 1),
  serverMomentum: v.optional(decay, 0),
});
export type FedAvgMConfig = v.InferOutput<typeof FedAvgMConfig>;

export function createFedAvgM(options: FedAvgMConfig): Strategy {
  const { serverLearningRate: lr, serverMomentum: beta } = options;
  const slotNames = beta > 0 ? ["momentum"] : [];
  return makeStrategy("fedavgm", (global, meanDelta, state) => {
    const previous = readSlots(state, global, slotNames)?.get("momentum") ?? null;
    const out: TensorMap = new Map();
    const momentum: TensorMap = new Map();
    for (const [name, x] of global) {
      const d = meanDelta.get(name)!;
      const prev = previous?.get(name) ?? null;
      const next = new Float32Array(x.length);
      const mom = new Float32Array(beta > 0 ? x.length : 0);
      for (let i = 0; i < x.length; i++) {
        const g = -d[i]!;
        if (beta > 0) {
          mom[i] = prev === null ? g : beta * prev[i]! + g;
          next[i] = x[i]! - lr * mom[i]!;
        } else {
          next[i] = x[i]! - lr * g;
        }
      }
      out.set(name, next);
      if (beta > 0) momentum.set(name, mom);
    }
    return { global: out, slots: writeSlots(new Map(beta > 0 ? [["momentum", momentum]] : [])) };
  });
}
