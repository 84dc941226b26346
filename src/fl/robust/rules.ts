// A robust aggregation as one config: an optional weight cap, then optional norm bounding, then a rule
// that turns the round's updates into its aggregate (what the strategy then applies as it applies the
// plain mean). Each rule's paper and the attackers it tolerates are in its module.
import type { RobustConfig, RobustRule } from "../../protocol/robust.ts";
import { FlError } from "../errors.ts";
import { type Aggregate, meanOf } from "./aggregate.ts";
import { bulyan } from "./bulyan.ts";
import { coordinateMedian, trimmedMean } from "./coordinate.ts";
import { GEOMETRIC_MEDIAN_DEFAULTS, type GeometricMedianReport, geometricMedian } from "./geometric-median.ts";
import { type KrumReport, multiKrum } from "./krum.ts";
import { boundNorms, capWeights, type NormBoundReport } from "./norm-bound.ts";
import { DEFAULT_BUDGET_BYTES, memoryVector, type UpdateSet, type VectorStore } from "./update-set.ts";

/** What a robust aggregation did, for the round's result. */
export interface RobustReport {
  rule: RobustRule["name"];
  normBound?: NormBoundReport;
  /** Krum, Multi-Krum and Bulyan: the updates picked (Bulyan still drops some of their values per coordinate). */
  krum?: KrumReport;
  geometricMedian?: GeometricMedianReport;
}

export interface RobustOptions {
  /** Bytes of update values read at once (DEFAULT_BUDGET_BYTES). */
  budgetBytes?: number;
  /** Where the geometric median keeps its estimate (in memory by default). */
  estimate?: (total: number) => VectorStore;
}

/** The round's aggregate under `config`, computed a block at a time inside the options' budget. */
export function robustAggregate(
  config: RobustConfig,
  updates: UpdateSet,
  options: RobustOptions = {},
): { aggregate: Aggregate; report: RobustReport } {
  const budget = options.budgetBytes ?? DEFAULT_BUDGET_BYTES;
  if (updates.count === 0) throw new FlError("robust_invalid", `${config.rule.name}: a round with no updates has no aggregate`);
  let set = config.weights ? capWeights(updates, config.weights) : updates;
  const report: RobustReport = { rule: config.rule.name };
  if (config.normBound) {
    const bounded = boundNorms(set, config.normBound, budget);
    set = bounded.set;
    report.normBound = bounded.report;
  }
  const rule = config.rule;
  switch (rule.name) {
    case "mean":
      return { aggregate: meanOf(set, budget), report };
    case "median":
      return { aggregate: coordinateMedian(set, budget), report };
    case "trimmed-mean":
      return { aggregate: trimmedMean(set, rule.trim, budget), report };
    case "krum":
    case "multi-krum": {
      const select = rule.name === "krum" ? 1 : (rule.select ?? set.count - rule.byzantine);
      const { aggregate, report: krum } = multiKrum(set, rule.byzantine, select, budget);
      return { aggregate, report: { ...report, krum } };
    }
    case "bulyan": {
      const { aggregate, report: krum } = bulyan(set, rule.byzantine, budget);
      return { aggregate, report: { ...report, krum } };
    }
    case "geometric-median": {
      const { name: _, ...given } = rule;
      const estimate = (options.estimate ?? memoryVector)(set.total);
      const { aggregate, report: geometric } = geometricMedian(set, { ...GEOMETRIC_MEDIAN_DEFAULTS, ...given }, estimate, budget);
      return { aggregate, report: { ...report, geometricMedian: geometric } };
    }
  }
}
