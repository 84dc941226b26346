// Bulyan (El Mhamdi, Guerraoui & Rouault 2018, "The Hidden Vulnerability of Distributed Learning in
// Byzantium"): with n updates of which at most f are arbitrary (n ≥ 4f + 3), Krum picks θ = n − 2f of them one
// at a time, each pick Krum's winner among the updates left (its score over its max(1, m − f − 2) nearest of
// the m left, as Flower's Bulyan scores the last picks, where m − f − 2 runs out); then each coordinate of the
// aggregate is the mean of the β = θ − 2f picked values nearest that coordinate's median. Krum alone bounds an
// attacker's distance to the honest updates but not each coordinate: in many dimensions a large change to a
// few coordinates hides in a small distance, which the second phase cuts. Unweighted. Its cost is Krum's (one
// pass for the pairwise distances), the picks (O(n³) additions on the distances alone) and one coordinate pass
// over the θ picked updates.
import { FlError } from "../errors.ts";
import type { Aggregate } from "./aggregate.ts";
import { meanAroundMedian } from "./coordinate.ts";
import { type KrumReport, krumScores, pairwiseDistances } from "./krum.ts";
import { subsetOf, type UpdateSet } from "./update-set.ts";

/**
 * The θ = n − 2f updates Bulyan's recursive Krum picks, in the order picked (ties to the lower index). Each
 * update's others are sorted by distance once; a pick's score walks that order past the updates already
 * picked, so the picks cost O(n³) additions (about 11 s in Node at the 1,448 updates Krum's memory check
 * admits), not a sort per update per pick.
 */
export function bulyanSelection(distances: Float64Array, n: number, byzantine: number): number[] {
  const nearestFirst = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => j)
      .filter((j) => j !== i)
      .sort((a, b) => distances[i * n + a]! - distances[i * n + b]! || a - b),
  );
  const taken = new Uint8Array(n);
  const picked: number[] = [];
  while (picked.length < n - 2 * byzantine) {
    const nearest = Math.max(1, n - picked.length - byzantine - 2);
    let best = -1;
    let bestScore = Infinity;
    for (let i = 0; i < n; i++) {
      if (taken[i]) continue;
      let score = 0;
      let counted = 0;
      for (const j of nearestFirst[i]!) {
        if (counted === nearest) break;
        if (taken[j]) continue;
        score += distances[i * n + j]!;
        counted++;
      }
      if (score < bestScore) [best, bestScore] = [i, score];
    }
    picked.push(best);
    taken[best] = 1;
  }
  return picked;
}

/** Bulyan against `byzantine` attackers; the report's scores are Krum's over all n updates, before any pick. */
export function bulyan(set: UpdateSet, byzantine: number, budgetBytes: number): { aggregate: Aggregate; report: KrumReport } {
  const n = set.count;
  if (!(Number.isInteger(byzantine) && byzantine >= 0))
    throw new FlError("robust_invalid", `bulyan: byzantine is a whole number >= 0, got ${byzantine}`);
  if (n < 4 * byzantine + 3)
    throw new FlError(
      "robust_invalid",
      `bulyan: ${n} updates cannot outvote ${byzantine} attackers; it needs at least ${4 * byzantine + 3}`,
    );
  const distances = pairwiseDistances(set, budgetBytes);
  const selected = bulyanSelection(distances, n, byzantine);
  return {
    aggregate: meanAroundMedian(subsetOf(set, selected), selected.length - 2 * byzantine, budgetBytes),
    report: { selected, scores: Array.from(krumScores(distances, n, byzantine)) },
  };
}
