// SecAgg+'s communication graph (Bell et al. 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic
// Overhead", section 3): each client masks with and shares its secrets among k neighbours only, k of order
// log n, so a client's work grows with log n instead of n. A Harary graph H(k, n) over a seeded random
// order of the clients (each joined to the k/2 nearest on either side of a ring); the complete graph where
// n ≤ k + 1. Seeded per round, so the server and every client derive the same graph.
import { shuffled } from "../data/lm-windows.ts";
import { seededUniform } from "../engine/sampling.ts";
import { SecAggError } from "./errors.ts";

/** The degree for n clients: 2 ⌈log2 n⌉, even, at least 2 (the complete graph below 2 ⌈log2 n⌉ + 2 clients). */
export function defaultDegree(n: number): number {
  return Math.max(2, 2 * Math.ceil(Math.log2(Math.max(2, n))));
}

/**
 * The smallest even degree k, from defaultDegree(n) up, at which a round of n clients that each drop with
 * probability `dropoutRate` (independently) leaves every client at least its threshold t = ⌊k/2⌋ + 1 of
 * surviving neighbours with probability at least 1 − `failure`: by a union bound over the clients,
 * n · P[Bin(k, 1 − dropoutRate) < t] ≤ failure. When no sparser graph does, the complete one (the even degree
 * n − 1 or n: neighbourGraph makes any degree ≥ n − 1 complete).
 */
export function degreeForDropouts(n: number, dropoutRate: number, failure = 1e-3): number {
  if (!(dropoutRate >= 0 && dropoutRate < 1)) throw new SecAggError("secagg_invalid", `a dropout rate is in [0, 1), got ${dropoutRate}`);
  for (let k = defaultDegree(n); k + 1 < n; k += 2) if (n * binomialBelow(k, 1 - dropoutRate, Math.floor(k / 2) + 1) <= failure) return k;
  return Math.max(2, n % 2 === 0 ? n : n - 1);
}

/** P[Bin(k, p) < t], summed in log space (k up to a few hundred). */
function binomialBelow(k: number, p: number, t: number): number {
  if (p === 1) return 0;
  let logC = 0;
  let sum = 0;
  for (let i = 0; i < t; i++) {
    if (i > 0) logC += Math.log((k - i + 1) / i);
    sum += Math.exp(logC + i * Math.log(p) + (k - i) * Math.log(1 - p));
  }
  return sum;
}

/** Each client's neighbours, sorted, symmetric (j is i's neighbour exactly when i is j's). */
export function neighbourGraph(clients: readonly string[], degree: number, seed: number): Map<string, string[]> {
  if (!(Number.isInteger(degree) && degree >= 2 && degree % 2 === 0))
    throw new SecAggError("secagg_invalid", `the graph's degree is an even whole number ≥ 2, got ${degree}`);
  const ids = [...clients].sort();
  if (new Set(ids).size !== ids.length) throw new SecAggError("secagg_invalid", "client ids repeat");
  const n = ids.length;
  if (n <= degree + 1) return new Map(ids.map((id) => [id, ids.filter((j) => j !== id)]));
  const ring = shuffled(ids, seededUniform(seed));
  const graph = new Map(ids.map((id) => [id, new Set<string>()]));
  ring.forEach((id, i) => {
    for (let d = 1; d <= degree / 2; d++) {
      const j = ring[(i + d) % n]!;
      graph.get(id)!.add(j);
      graph.get(j)!.add(id);
    }
  });
  return new Map([...graph].map(([id, set]) => [id, [...set].sort()]));
}
