// Natural partitions (Flower Datasets' NaturalIdPartitioner): one partition per value of a key the data
// already has (a mail's source, an address's president), the heterogeneity real clients would have.
import { DataError } from "../errors.ts";
import { fromParts, requireInt, type Partitioner } from "./partitioner.ts";

export interface NaturalPartitioner extends Partitioner {
  /** keys[p]: the key values of partition p, in key order. */
  readonly keys: readonly (readonly string[])[];
}

/**
 * Partitions of the items whose keys are `keys` (keys[i] is item i's), ordered by key (code-unit order,
 * the same in every locale); indices keep dataset order. `numPartitions` below the number of distinct
 * keys merges them round-robin in key order (key j goes to partition j mod numPartitions).
 */
export function naturalPartitioner(keys: readonly string[], numPartitions?: number): NaturalPartitioner {
  if (keys.length === 0) throw new DataError("dataset_empty", "no items to partition");
  const distinct = [...new Set(keys)].sort();
  const n = numPartitions ?? distinct.length;
  requireInt("numPartitions", n, 1);
  if (n > distinct.length) throw new DataError("partitioner_invalid", `numPartitions ${n} exceeds the ${distinct.length} distinct keys`);
  const partitionOf = new Map(distinct.map((key, j) => [key, j % n]));
  const parts = Array.from({ length: n }, () => [] as number[]);
  keys.forEach((key, i) => parts[partitionOf.get(key)!]!.push(i));
  return { ...fromParts(parts), keys: Array.from({ length: n }, (_, p) => distinct.filter((_, j) => j % n === p)) };
}
