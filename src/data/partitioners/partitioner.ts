// The partitioner interface of Flower Datasets (flwr_datasets.partitioner.Partitioner: `num_partitions`,
// `load_partition(partition_id)`), over indices instead of a dataset object so it runs anywhere: a
// client (one Worker) keeps the records at the indices of its partition.
import { DataError } from "../errors.ts";

export interface Partitioner {
  readonly numPartitions: number;
  /** The dataset indices of partition `id` (0 ≤ id < numPartitions); each index is in exactly one partition. */
  loadPartition(id: number): number[];
}

/** A partitioner over parts already computed; hands out copies so a caller cannot change a part. */
export function fromParts(parts: readonly (readonly number[])[]): Partitioner {
  return {
    numPartitions: parts.length,
    loadPartition(id) {
      if (!Number.isInteger(id) || id < 0 || id >= parts.length) {
        throw new DataError("partition_out_of_range", `partition id ${id} is not an integer in [0, ${parts.length})`);
      }
      return [...parts[id]!];
    },
  };
}

/** Throws a DataError("partitioner_invalid") unless `value` is an integer ≥ `min`. */
export function requireInt(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new DataError("partitioner_invalid", `${name} must be an integer ≥ ${min}, got ${value}`);
  }
}
