// Krum and Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant
// Gradient Descent"): with n updates of which at most f are arbitrary (n > 2f + 2), each update's score is
// the sum of its squared distances to its n − f − 2 nearest others; Krum keeps the lowest-scoring update,
// Multi-Krum averages the m lowest (m = n − f by default), unweighted. It needs every pair of updates:
// O(n² d) time, one pass over the updates. It assumes honest updates cluster: under non-IID data it may
// keep only the majority's updates, and attackers close to the cluster's centre ("a little is enough",
// Baruch et al. 2019) are selected.
import { FlError } from "../errors.ts";
import { type Aggregate, meanOf } from "./aggregate.ts";
import { forBlocks, type UpdateSet } from "./update-set.ts";

/** The n × n matrix of squared L2 distances between updates, in float64, row-major. */
export function pairwiseDistances(set: UpdateSet, budgetBytes: number): Float64Array {
  const n = set.count;
  const d = new Float64Array(n * n);
  forBlocks(set, 0, set.total, budgetBytes, (_, blocks) => {
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++) {
        const a = blocks[i]!;
        const b = blocks[j]!;
        let s = 0;
        for (let k = 0; k < a.length; k++) s += (a[k]! - b[k]!) ** 2;
        d[i * n + j]! += s;
      }
  });
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) d[i * n + j] = d[j * n + i]!;
  return d;
}

/** Each update's Krum score against `byzantine` attackers, from the distance matrix. */
export function krumScores(distances: Float64Array, n: number, byzantine: number): Float64Array {
  if (!(Number.isInteger(byzantine) && byzantine >= 0))
    throw new FlError("robust_invalid", `krum: byzantine is a whole number >= 0, got ${byzantine}`);
  if (n <= 2 * byzantine + 2)
    throw new FlError(
      "robust_invalid",
      `krum: ${n} updates cannot outvote ${byzantine} attackers; it needs more than ${2 * byzantine + 2}`,
    );
  const nearest = n - byzantine - 2;
  return Float64Array.from({ length: n }, (_, i) => {
    const others = Float64Array.from({ length: n - 1 }, (_, k) => distances[i * n + (k < i ? k : k + 1)]!).sort();
    return others.subarray(0, nearest).reduce((a, b) => a + b, 0);
  });
}

/** What Krum chose: the selected updates (lowest score first) and every update's score. */
export interface KrumReport {
  selected: number[];
  scores: number[];
}

/**
 * Multi-Krum: the unweighted mean of the `select` lowest-scoring updates (ties to the lower index);
 * Krum is `select` 1.
 */
export function multiKrum(
  set: UpdateSet,
  byzantine: number,
  select: number,
  budgetBytes: number,
): { aggregate: Aggregate; report: KrumReport } {
  const n = set.count;
  if (!(Number.isInteger(select) && select >= 1 && select <= n))
    throw new FlError("robust_invalid", `multiKrum: select is a whole number in [1, ${n}], got ${select}`);
  const scores = krumScores(pairwiseDistances(set, budgetBytes), n, byzantine);
  const selected = Array.from({ length: n }, (_, i) => i)
    .sort((a, b) => scores[a]! - scores[b]! || a - b)
    .slice(0, select);
  return { aggregate: meanOf(set, budgetBytes, selected, () => 1), report: { selected, scores: Array.from(scores) } };
}
