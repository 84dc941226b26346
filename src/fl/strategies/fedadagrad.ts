import * as v from "valibot";
import type { Strategy } from "../strategy.ts";
import { createFedOpt, fedOptFields } from "./fedopt.ts";

/**
 * FedAdagrad (Reddi et al. 2021): FedOpt with v_t = v_{t−1} + Δ_t².
 * Defaults are Flower's: η = 0.1, τ = 1e-3, β1 = 0 (Flower fixes β1 = 0, so m_t = Δ_t; the paper's
 * Algorithm 2 allows β1 > 0, which this option keeps).
 */
export const FedAdagradConfig = v.strictObject({
  name: v.literal("fedadagrad"),
  ...fedOptFields({ eta: 0.1, beta1: 0, tau: 1e-3 }),
});
export type FedAdagradConfig = v.InferOutput<typeof FedAdagradConfig>;

export function createFedAdagrad(options: FedAdagradConfig): Strategy {
  return createFedOpt("fedadagrad", options, { secondMoment: (v, d) => v + d * d });
}
