// Norm bounding and weight caps: the defences that look at one update at a time.
// - Norm bounding (Sun et al. 2019, "Can You Really Backdoor Federated Learning?"): each update scaled to
//   an L2 norm of at most M, fixed or the median of the round's norms, so no client moves the mean by
//   more than M times its weight share; it bounds scaling attacks, not direction (a sign flip of norm M
//   still pulls).
// - Weight caps: each client's weight capped, or every weight 1, so an inflated example count buys no
//   more than the cap.
import type { RobustConfig } from "../../protocol/robust.ts";
import { FlError } from "../errors.ts";
import { sortedMedian } from "./coordinate.ts";
import { forBlocks, mappedSet, type UpdateSet } from "./update-set.ts";

/** Each update's L2 norm, in float64, one pass over the set. */
function updateNorms(set: UpdateSet, budgetBytes: number): Float64Array {
  const sums = new Float64Array(set.count);
  forBlocks(set, 0, set.total, budgetBytes, (_, blocks) =>
    blocks.forEach((b, i) => {
      for (const x of b) sums[i]! += x * x;
    }),
  );
  return sums.map(Math.sqrt);
}

type NormBound = NonNullable<RobustConfig["normBound"]>;
type WeightCap = NonNullable<RobustConfig["weights"]>;

/** What norm bounding did: the bound it used and each update's norm before it. */
export interface NormBoundReport {
  bound: number;
  norms: number[];
  clipped: number;
}

/** The set with each update scaled to an L2 norm of at most the bound (fixed, or the median norm). */
export function boundNorms(set: UpdateSet, option: NormBound, budgetBytes: number): { set: UpdateSet; report: NormBoundReport } {
  const norms = updateNorms(set, budgetBytes);
  const bound = option.bound === "median" ? sortedMedian(Float64Array.from(norms).sort()) : option.bound;
  // A median of 0 (most updates all zeros) scales every other update to zeros too.
  if (!(bound >= 0)) throw new FlError("robust_invalid", `normBound: the bound must be >= 0, got ${bound}`);
  const scales = Array.from(norms, (n) => (n > bound ? bound / n : 1));
  const weights = Array.from({ length: set.count }, (_, i) => set.weight(i));
  const scaled = mappedSet(set, weights, (i, values) => {
    const s = scales[i]!;
    if (s !== 1) for (let j = 0; j < values.length; j++) values[j]! *= s;
  });
  return { set: scaled, report: { bound, norms: Array.from(norms), clipped: scales.filter((s) => s < 1).length } };
}

/** The set with each weight capped at `cap`, or every weight 1. */
export function capWeights(set: UpdateSet, option: WeightCap): UpdateSet {
  const weights = Array.from({ length: set.count }, (_, i) => (option === "uniform" ? 1 : Math.min(set.weight(i), option.cap)));
  return mappedSet(set, weights);
}
