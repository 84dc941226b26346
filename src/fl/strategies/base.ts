import { FlError } from "../errors.ts";
import { assertAggregateInputs } from "../server-state.ts";
import type { ServerState, Strategy } from "../strategy.ts";
import { assertFinite, type TensorMap } from "../tensors.ts";
import { weightedMetricMean } from "../weighted-mean.ts";

/** The part of aggregate-train that differs between strategies; inputs already checked. */
export type ServerUpdate = (global: TensorMap, meanDelta: TensorMap, state: ServerState) => { global: TensorMap; slots: TensorMap };

function assertRound(round: number): void {
  if (!Number.isInteger(round) || round < 1) throw new FlError("state_invalid", `round must be an integer >= 1, got ${round}`);
}

/**
 * A Strategy from its server update, with what every strategy shares (as Flower's FedAvg, which every
 * strategy here extends): configure-train sends the round and μ (0 unless FedProx), aggregate-train checks
 * its inputs, advances the round and refuses a non-finite result, aggregate-evaluate is the
 * example-weighted mean of each metric.
 */
export function makeStrategy(name: string, update: ServerUpdate, proximalMu = 0): Strategy {
  return {
    name,
    configureTrain(round) {
      assertRound(round);
      return { round, proximalMu };
    },
    aggregateTrain(global, meanDelta, state) {
      assertAggregateInputs(global, meanDelta, state);
      const next = update(global, meanDelta, state);
      assertFinite(next.global, `${name}: new global`);
      return { global: next.global, state: { round: state.round + 1, slots: next.slots } };
    },
    configureEvaluate(round) {
      assertRound(round);
      return { round };
    },
    aggregateEvaluate(results) {
      return weightedMetricMean(results);
    },
  };
}
