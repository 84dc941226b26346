// The geometric median by the smoothed Weiszfeld algorithm (RFA, Pillutla, Kakade, Harchaoui 2022,
// "Robust Aggregation for Federated Learning", Algorithm 2): the point z minimising Σ α_i ‖z − x_i‖ with
// α the normalised weights, found by repeating z ← Σ β_i x_i / Σ β_i, β_i = α_i / max(ν, ‖z − x_i‖), from
// the weighted mean, until the objective improves by less than `tolerance` of itself. Its breakdown point
// is 1/2 of the total weight, so it is weighted by the example counts: pair it with a weight cap against
// inflated counts. Each iteration is two passes over the updates; the estimate lives in a VectorStore.
import { FlError } from "../errors.ts";
import { type Aggregate, meanOf } from "./aggregate.ts";
import { forBlocks, type UpdateSet, type VectorStore } from "./update-set.ts";

export interface GeometricMedianOptions {
  /** ν: distances below it count as ν, so an estimate on an update does not divide by zero (RFA: 1e-6). */
  smoothing: number;
  maxIterations: number;
  /** Stop once the objective's relative improvement is below it (RFA: 1e-6). */
  tolerance: number;
}

export const GEOMETRIC_MEDIAN_DEFAULTS: GeometricMedianOptions = { smoothing: 1e-6, maxIterations: 10, tolerance: 1e-6 };

/** What the iterations did: the objective after each (the weighted mean's first) and the final β weights. */
export interface GeometricMedianReport {
  iterations: number;
  objective: number[];
  weights: number[];
}

/** Each update's L2 distance to the stored estimate, one pass. */
function distancesTo(set: UpdateSet, estimate: VectorStore, budgetBytes: number): Float64Array {
  const sums = new Float64Array(set.count);
  // The estimate's block shares the budget with the updates'.
  const perVector = budgetBytes / (set.count + 1);
  forBlocks(set, 0, set.total, perVector * set.count, (start, blocks) => {
    const z = new Float32Array(blocks[0]!.length);
    estimate.read(start, z);
    blocks.forEach((b, i) => {
      let s = 0;
      for (let k = 0; k < b.length; k++) s += (b[k]! - z[k]!) ** 2;
      sums[i]! += s;
    });
  });
  return sums.map(Math.sqrt);
}

/** Writes `aggregate` into `store`, a range at a time. */
function writeAll(aggregate: Aggregate, store: VectorStore, budgetBytes: number): void {
  const width = Math.max(1, Math.floor(budgetBytes / 4));
  for (let start = 0; start < store.total; start += width) {
    const part = new Float32Array(Math.min(width, store.total - start));
    aggregate.read(start, part);
    store.write(start, part);
  }
}

/** The geometric median of the set into `estimate` (a vector of the set's length), and what it took. */
export function geometricMedian(
  set: UpdateSet,
  options: GeometricMedianOptions,
  estimate: VectorStore,
  budgetBytes: number,
): { aggregate: Aggregate; report: GeometricMedianReport } {
  const { smoothing, maxIterations, tolerance } = options;
  if (!(smoothing > 0 && Number.isInteger(maxIterations) && maxIterations >= 1 && tolerance >= 0))
    throw new FlError("robust_invalid", "geometricMedian: smoothing > 0, maxIterations a whole number >= 1 and tolerance >= 0");
  if (estimate.total !== set.total)
    throw new FlError("tensor_mismatch", `geometricMedian: an estimate of ${estimate.total} values for updates of ${set.total}`);
  const weightSum = Array.from({ length: set.count }, (_, i) => set.weight(i)).reduce((a, b) => a + b, 0);
  const alpha = Array.from({ length: set.count }, (_, i) => set.weight(i) / weightSum);
  const objectiveOf = (d: Float64Array) => d.reduce((s, x, i) => s + alpha[i]! * x, 0);
  writeAll(meanOf(set, budgetBytes), estimate, budgetBytes);
  let distances = distancesTo(set, estimate, budgetBytes);
  const objective = [objectiveOf(distances)];
  let beta: number[] = alpha;
  let iterations = 0;
  while (iterations < maxIterations) {
    beta = Array.from(distances, (d, i) => alpha[i]! / Math.max(smoothing, d));
    const b = beta;
    writeAll(
      meanOf(set, budgetBytes, undefined, (i) => b[i]!),
      estimate,
      budgetBytes,
    );
    iterations++;
    distances = distancesTo(set, estimate, budgetBytes);
    objective.push(objectiveOf(distances));
    const [before, after] = objective.slice(-2) as [number, number];
    if (Math.abs(before - after) <= tolerance * after) break;
  }
  const total = beta.reduce((a, b) => a + b, 0);
  return { aggregate: estimate, report: { iterations, objective, weights: beta.map((b) => b / total) } };
}
