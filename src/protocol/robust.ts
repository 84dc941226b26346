// A federation's robust aggregation (src/fl/robust/), as the operator posts it with the federation
// config: an optional weight cap, optional norm bounding, and the rule that makes the round's aggregate.
import * as v from "valibot";

const whole = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

export const RobustConfig = v.strictObject({
  rule: v.variant("name", [
    /** The weighted mean (with norm bounding or a weight cap, the plain FedAvg otherwise). */
    v.strictObject({ name: v.literal("mean") }),
    v.strictObject({ name: v.literal("median") }),
    /** trim: the fraction cut at each end of each coordinate, at least the attackers' share. */
    v.strictObject({ name: v.literal("trimmed-mean"), trim: v.pipe(v.number(), v.minValue(0), v.ltValue(0.5)) }),
    /** byzantine: the attackers it tolerates (a round needs more than 2 byzantine + 2 updates). */
    v.strictObject({ name: v.literal("krum"), byzantine: whole(0, 10_000) }),
    /** select: the updates averaged, n − byzantine by default. */
    v.strictObject({ name: v.literal("multi-krum"), byzantine: whole(0, 10_000), select: v.optional(whole(1, 10_000)) }),
    /** byzantine: the attackers it tolerates (a round needs at least 4 byzantine + 3 updates). */
    v.strictObject({ name: v.literal("bulyan"), byzantine: whole(0, 10_000) }),
    v.strictObject({
      name: v.literal("geometric-median"),
      smoothing: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(1))),
      maxIterations: v.optional(whole(1, 100)),
      tolerance: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
    }),
  ]),
  /** Each update scaled to an L2 norm of at most bound, or of at most the round's median norm. */
  normBound: v.optional(v.strictObject({ bound: v.union([v.pipe(v.number(), v.gtValue(0), v.maxValue(1e6)), v.literal("median")]) })),
  /** Each client's weight capped, or every weight 1. */
  weights: v.optional(v.union([v.literal("uniform"), v.strictObject({ cap: v.pipe(v.number(), v.gtValue(0)) })])),
});
export type RobustConfig = v.InferOutput<typeof RobustConfig>;
export type RobustRule = RobustConfig["rule"];
