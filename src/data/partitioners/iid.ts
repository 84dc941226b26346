// IID partitions (Flower Datasets' IidPartitioner): a seeded shuffle cut into near-equal parts, so every
// client sees the same distribution; the baseline against which skewed partitions are compared.
import { seededUniform } from "../../engine/sampling.ts";
import { DataError } from "../errors.ts";
import { shuffled } from "../lm-windows.ts";
import { fromParts, requireInt, type Partitioner } from "./partitioner.ts";

export interface IidOptions {
  numPartitions: number;
  seed: number;
}

/** Partitions of `size` items whose sizes differ by at most one (the first `size % numPartitions` are larger). */
export function iidPartitioner(size: number, { numPartitions, seed }: IidOptions): Partitioner {
  requireInt("numPartitions", numPartitions, 1);
  if (size < numPartitions) throw new DataError("dataset_too_small", `${size} items cannot fill ${numPartitions} partitions`);
  const order = shuffled(
    Array.from({ length: size }, (_, i) => i),
    seededUniform(seed),
  );
  const base = Math.floor(size / numPartitions);
  const larger = size % numPartitions;
  const parts: number[][] = [];
  for (let p = 0, start = 0; p < numPartitions; p++) {
    const end = start + base + (p < larger ? 1 : 0);
    parts.push(order.slice(start, end));
    start = end;
  }
  return fromParts(parts);
}
