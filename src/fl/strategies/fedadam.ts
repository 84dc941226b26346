import * as v from "valibot";
import type { Strategy } from "../strategy.ts";
import { decay } from "./options.ts";
import { createFedOpt, fedOptFields } from "./fedopt.ts";

/**
 * FedAdam (Reddi et al. 2021): FedOpt with v_t = β2·v_{t−1} + (1 − β2)·Δ_t², and, as Flower since
 * flwr PR #4362 (2024), the bias-corrected step size of Kingma & Ba's Adam:
 *   η_t = η·√(1 − β2^(t+1)) / (1 − β1^(t+1))      (t the server round from 1)
 * Flower raises β to server_round + 1 where Adam would use t; this follows Flower.
 * `biasCorrection: false` gives the paper's (and earlier Flower's) η_t = η.
 * Defaults are Flower's: η = 0.1, β1 = 0.9, β2 = 0.99, τ = 1e-3.
 */
export const FedAdamConfig = v.strictObject({
  name: v.literal("fedadam"),
  ...fedOptFields({ eta: 0.1, beta1: 0.9, tau: 1e-3 }),
  beta2: v.optional(decay, 0.99),
  biasCorrection: v.optional(v.boolean(), true),
});
export type FedAdamConfig = v.InferOutput<typeof FedAdamConfig>;

/** Flower's bias-corrected server learning rate at server round t (from 1). */
export function fedAdamEta(eta: number, beta1: number, beta2: number, t: number): number {
  return (eta * Math.sqrt(1 - beta2 ** (t + 1))) / (1 - beta1 ** (t + 1));
}

export function createFedAdam(options: FedAdamConfig): Strategy {
  const { eta, beta1, beta2, biasCorrection } = options;
  return createFedOpt("fedadam", options, {
    secondMoment: (v, d) => beta2 * v + (1 - beta2) * d * d,
    etaAt: (t) => (biasCorrection ? fedAdamEta(eta, beta1, beta2, t) : eta),
  });
}
