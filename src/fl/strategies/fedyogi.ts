import * as v from "valibot";
import type { Strategy } from "../strategy.ts";
import { decay } from "./options.ts";
import { createFedOpt, fedOptFields } from "./fedopt.ts";

/**
 * FedYogi (Reddi et al. 2021): FedOpt with v_t = v_{t−1} − (1 − β2)·Δ_t²·sign(v_{t−1} − Δ_t²), sign(0) = 0.
 * No bias correction (neither the paper nor Flower has one). Defaults are Flower's: η = 1e-2, β1 = 0.9,
 * β2 = 0.99, τ = 1e-3.
 */
export const FedYogiConfig = v.strictObject({
  name: v.literal("fedyogi"),
  ...fedOptFields({ eta: 1e-2, beta1: 0.9, tau: 1e-3 }),
  beta2: v.optional(decay, 0.99),
});
export type FedYogiConfig = v.InferOutput<typeof FedYogiConfig>;

export function createFedYogi(options: FedYogiConfig): Strategy {
  const { beta2 } = options;
  return createFedOpt("fedyogi", options, {
    secondMoment: (v, d) => v - (1 - beta2) * d * d * Math.sign(v - d * d),
  });
}
