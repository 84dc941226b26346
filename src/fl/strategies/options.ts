import * as v from "valibot";

/** Number schemas shared by the strategies' option schemas (each option schema sits in its strategy's file). */

/** A finite number > 0 (learning rates, τ). */
export const positive = v.pipe(v.number(), v.finite(), v.gtValue(0));
/** A finite number >= 0 (μ). */
export const nonNegative = v.pipe(v.number(), v.finite(), v.minValue(0));
/** A decay factor in [0, 1) (β1, β2, server momentum). */
export const decay = v.pipe(v.number(), v.minValue(0), v.ltValue(1));
