import { firstIssue } from "../errors.ts";
import * as v from "valibot";
import { FlError } from "./errors.ts";
import type { Strategy } from "./strategy.ts";
import { createFedAdagrad, FedAdagradConfig } from "./strategies/fedadagrad.ts";
import { createFedAdam, FedAdamConfig } from "./strategies/fedadam.ts";
import { createFedAvg, FedAvgConfig } from "./strategies/fedavg.ts";
import { createFedAvgM, FedAvgMConfig } from "./strategies/fedavgm.ts";
import { createFedProx, FedProxConfig } from "./strategies/fedprox.ts";
import { createFedYogi, FedYogiConfig } from "./strategies/fedyogi.ts";

/**
 * A strategy config as plain JSON, e.g. `{name: "fedadam", eta: 1e-2, beta1: 0.9, beta2: 0.99, tau: 1e-9}`.
 * Options left out take Flower's defaults; unknown options are refused (a misspelt "beta_1" is an error,
 * not a silent default).
 */
export const StrategyConfig = v.variant("name", [
  FedAvgConfig,
  FedAvgMConfig,
  FedProxConfig,
  FedAdagradConfig,
  FedAdamConfig,
  FedYogiConfig,
]);
/** A validated strategy config, every default filled in. */
export type StrategyConfig = v.InferOutput<typeof StrategyConfig>;
/** A strategy config as written, defaults optional. */
export type StrategyConfigInput = v.InferInput<typeof StrategyConfig>;
export type StrategyName = StrategyConfig["name"];

/** Validates a strategy config; throws FlError `strategy_invalid` naming the offending field. */
export function parseStrategyConfig(json: unknown): StrategyConfig {
  const parsed = v.safeParse(StrategyConfig, json);
  if (parsed.success) return parsed.output;
  throw new FlError("strategy_invalid", firstIssue(parsed.issues, "strategy config", { schema: StrategyConfig }));
}

/** The strategy a config names, its options validated (`strategy_invalid` naming the field). */
export function createStrategy(json: unknown): Strategy {
  const config = parseStrategyConfig(json);
  switch (config.name) {
    case "fedavg":
      return createFedAvg(config);
    case "fedavgm":
      return createFedAvgM(config);
    case "fedprox":
      return createFedProx(config);
    case "fedadagrad":
      return createFedAdagrad(config);
    case "fedadam":
      return createFedAdam(config);
    case "fedyogi":
      return createFedYogi(config);
  }
}
