import * as v from "valibot";
import { FlError } from "../errors.ts";
import type { Strategy } from "../strategy.ts";
import { assertSameTensors, type TensorMap } from "../tensors.ts";
import { makeStrategy } from "./base.ts";
import { fedAvgUpdate } from "./fedavg.ts";
import { nonNegative } from "./options.ts";

/**
 * FedProx (Li et al. 2020). The server side is FedAvg (x_{t+1} = x_t + Δ_t); configure-train sends μ
 * (Flower's "proximal-mu"), and each client minimises F_k(w) + (μ/2)·‖w − w_t‖², i.e. adds
 * μ·(w − w_t) to its gradients at every local step (`addProximalGradient`).
 *
 * `proximalMu` is required here, where Flower defaults it to 0 and logs a warning: μ = 0 is FedAvg, and a
 * pure module has no log to warn in.
 */
export const FedProxConfig = v.strictObject({
  name: v.literal("fedprox"),
  proximalMu: nonNegative,
});
export type FedProxConfig = v.InferOutput<typeof FedProxConfig>;

export function createFedProx(options: FedProxConfig): Strategy {
  return makeStrategy("fedprox", fedAvgUpdate(1), options.proximalMu);
}

function assertMu(mu: number): void {
  if (typeof mu !== "number" || !Number.isFinite(mu) || mu < 0)
    throw new FlError("strategy_invalid", `proximalMu must be a finite number >= 0, got ${mu}`);
}

/**
 * Client side of FedProx: adds the gradient of (μ/2)·‖w − w_global‖², μ·(w − w_global), to `grads` in
 * place and returns `grads`. `grads`, `params` and `globalParams` must hold the same tensors
 * (`tensor_mismatch` otherwise).
 */
export function addProximalGradient(grads: TensorMap, params: TensorMap, globalParams: TensorMap, mu: number): TensorMap {
  assertMu(mu);
  assertSameTensors(params, grads, "gradients vs parameters");
  assertSameTensors(params, globalParams, "global parameters vs parameters");
  if (mu === 0) return grads;
  for (const [name, g] of grads) {
    const w = params.get(name)!;
    const w0 = globalParams.get(name)!;
    for (let i = 0; i < g.length; i++) g[i] = g[i]! + mu * (w[i]! - w0[i]!);
  }
  return grads;
}

/** The proximal term (μ/2)·‖w − w_global‖² over all tensors, for the client to add to its reported loss. */
export function proximalPenalty(params: TensorMap, globalParams: TensorMap, mu: number): number {
  assertMu(mu);
  assertSameTensors(params, globalParams, "global parameters vs parameters");
  let sq = 0;
  for (const [name, w] of params) {
    const w0 = globalParams.get(name)!;
    for (let i = 0; i < w.length; i++) {
      const diff = w[i]! - w0[i]!;
      sq += diff * diff;
    }
  }
  return (mu / 2) * sq;
}
