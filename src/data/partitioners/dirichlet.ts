// Label skew across clients (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical data
// distribution for federated visual classification"; Flower Datasets' DirichletPartitioner): for each
// label, proportions q ~ Dirichlet(alpha) over partitions split that label's items. Small alpha gives
// each client few labels; large alpha approaches IID.
import { seededUniform } from "../../engine/sampling.ts";
import { DataError } from "../errors.ts";
import { shuffled } from "../lm-windows.ts";
import { dirichletVariate } from "./gamma.ts";
import { fromParts, requireInt, type Partitioner } from "./partitioner.ts";

export interface DirichletOptions {
  numPartitions: number;
  alpha: number;
  seed: number;
  /** Redraw until every partition has at least this many items (Flower's min_partition_size); default 0. */
  minPartitionSize?: number;
  /** Draws before giving up on minPartitionSize; default 10, as Flower. */
  maxTries?: number;
}

/** Partitions of the items whose labels are `labels` (labels[i] is item i's). */
export function dirichletPartitioner(labels: readonly string[], opts: DirichletOptions): Partitioner {
  const { numPartitions, alpha, seed, minPartitionSize = 0, maxTries = 10 } = opts;
  requireInt("numPartitions", numPartitions, 1);
  requireInt("minPartitionSize", minPartitionSize, 0);
  requireInt("maxTries", maxTries, 1);
  if (!(alpha > 0 && Number.isFinite(alpha))) throw new DataError("partitioner_invalid", `alpha must be a finite number > 0, got ${alpha}`);
  if (labels.length < numPartitions * minPartitionSize) {
    throw new DataError(
      "partition_min_size_unmet",
      `${labels.length} items cannot give ${numPartitions} partitions ${minPartitionSize} items each`,
    );
  }
  const byLabel = new Map<string, number[]>();
  labels.forEach((label, i) => {
    const group = byLabel.get(label);
    if (group) group.push(i);
    else byLabel.set(label, [i]);
  });
  // Labels in sorted order, so a seed gives the same draw whatever order the labels first appear in.
  const groups = [...byLabel.keys()].sort().map((label) => byLabel.get(label)!);
  const uniform = seededUniform(seed);
  let smallest = 0;
  for (let attempt = 0; attempt < maxTries; attempt++) {
    const parts = drawParts(groups, numPartitions, alpha, uniform);
    smallest = Math.min(...parts.map((p) => p.length));
    // Shuffled within a partition, so a client does not see its labels in blocks.
    if (smallest >= minPartitionSize) return fromParts(parts.map((p) => shuffled(p, uniform)));
  }
  throw new DataError(
    "partition_min_size_unmet",
    `after ${maxTries} Dirichlet(${alpha}) draws the smallest of ${numPartitions} partitions still had ${smallest} < ` +
      `${minPartitionSize} items; raise alpha or lower numPartitions or minPartitionSize`,
  );
}

/** One draw: each label's items, shuffled, cut at the cumulative proportions (as Flower does). */
function drawParts(groups: readonly (readonly number[])[], n: number, alpha: number, uniform: () => number): number[][] {
  const parts = Array.from({ length: n }, () => [] as number[]);
  for (const group of groups) {
    const order = shuffled(group, uniform);
    let cumulative = 0;
    let start = 0;
    dirichletVariate(alpha, n, uniform).forEach((q, k) => {
      cumulative += q;
      const end = k === n - 1 ? order.length : Math.min(order.length, Math.floor(cumulative * order.length));
      parts[k]!.push(...order.slice(start, end));
      start = end;
    });
  }
  return parts;
}
