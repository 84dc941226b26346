// Coordinate-wise rules (Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards Optimal
// Statistical Rates"): each value of the aggregate from that coordinate's values across the updates alone,
// unweighted (an inflated example count buys nothing).
// - Median: tolerates fewer than half of the updates being arbitrary; under non-IID data it is biased
//   toward the majority's values, and attacks that stay inside the honest spread per coordinate ("a little
//   is enough", Baruch et al. 2019) move it.
// - Trimmed mean with fraction β: drops the ⌊βn⌋ largest and smallest values of each coordinate and
//   averages the rest; tolerates up to ⌊βn⌋ arbitrary updates (β ≥ f/n).
// - The mean around the median (Bulyan's second phase, El Mhamdi et al. 2018): the mean of the β values
//   nearest each coordinate's median.
import { FlError } from "../errors.ts";
import type { Aggregate } from "./aggregate.ts";
import { forBlocks, type UpdateSet } from "./update-set.ts";

/** The aggregate whose value j is `reduce` of coordinate j's values, sorted ascending. */
function coordinateRule(set: UpdateSet, budgetBytes: number, reduce: (sorted: Float64Array) => number): Aggregate {
  const column = new Float64Array(set.count);
  return {
    read(start, out) {
      forBlocks(set, start, start + out.length, budgetBytes, (s, blocks) => {
        for (let j = 0; j < blocks[0]!.length; j++) {
          for (let i = 0; i < blocks.length; i++) column[i] = blocks[i]![j]!;
          out[s - start + j] = reduce(column.sort());
        }
      });
    },
  };
}

/** The median of values sorted ascending (the mean of the two middle ones for an even count). */
export function sortedMedian(sorted: ArrayLike<number>): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The coordinate-wise median. */
export function coordinateMedian(set: UpdateSet, budgetBytes: number): Aggregate {
  return coordinateRule(set, budgetBytes, sortedMedian);
}

/** The coordinate-wise trimmed mean: ⌊trim · n⌋ values cut at each end. */
export function trimmedMean(set: UpdateSet, trim: number, budgetBytes: number): Aggregate {
  if (!(trim >= 0 && trim < 0.5)) throw new FlError("robust_invalid", `trimmedMean: trim is a fraction in [0, 0.5), got ${trim}`);
  const cut = Math.floor(trim * set.count);
  if (set.count - 2 * cut < 1)
    throw new FlError("robust_invalid", `trimmedMean: ${set.count} updates leave none after cutting ${cut} at each end`);
  return coordinateRule(set, budgetBytes, (v) => {
    let sum = 0;
    for (let i = cut; i < v.length - cut; i++) sum += v[i]!;
    return sum / (v.length - 2 * cut);
  });
}

/**
 * The coordinate-wise mean of the `beta` values nearest each coordinate's median. In a sorted column they
 * are a run around the middle, taken one at a time from whichever side is nearer (ties to the lower value).
 */
export function meanAroundMedian(set: UpdateSet, beta: number, budgetBytes: number): Aggregate {
  if (!(Number.isInteger(beta) && beta >= 1 && beta <= set.count))
    throw new FlError("robust_invalid", `meanAroundMedian: beta is a whole number in [1, ${set.count}], got ${beta}`);
  return coordinateRule(set, budgetBytes, (v) => {
    const median = sortedMedian(v);
    let below = (v.length - 1) >> 1;
    let above = below + 1;
    let sum = 0;
    for (let k = 0; k < beta; k++)
      sum += above >= v.length || (below >= 0 && median - v[below]! <= v[above]! - median) ? v[below--]! : v[above++]!;
    return sum / beta;
  });
}
