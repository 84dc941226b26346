// What a robust rule produces: the round's aggregate, read a range at a time, as the aggregator's close
// reads the accumulator's mean (durable-objects/aggregator/accumulator.ts).
import type { UpdateSet } from "./update-set.ts";

/** An aggregate read a range at a time. */
export interface Aggregate {
  read(start: number, out: Float32Array): void;
}

/**
 * The mean of the `members` updates (all by default) weighted by `weightOf` (the set's weights by
 * default), in float64, reading `budgetBytes` of values at a time.
 */
export function meanOf(
  set: UpdateSet,
  budgetBytes: number,
  members: readonly number[] = Array.from({ length: set.count }, (_, i) => i),
  weightOf: (i: number) => number = (i) => set.weight(i),
): Aggregate {
  const total = members.reduce((a, i) => a + weightOf(i), 0);
  // A float32 buffer and a float64 sum per value.
  const width = Math.max(1, Math.floor(budgetBytes / 12));
  return {
    read(start, out) {
      for (let s = 0; s < out.length; s += width) {
        const n = Math.min(width, out.length - s);
        const values = new Float32Array(n);
        const sum = new Float64Array(n);
        for (const i of members) {
          set.read(i, start + s, values);
          const w = weightOf(i);
          for (let k = 0; k < n; k++) sum[k]! += w * values[k]!;
        }
        for (let k = 0; k < n; k++) out[s + k] = sum[k]! / total;
      }
    },
  };
}
