// The tensor names of the black-box methods' versions, shared by the aggregator that makes them and the
// clients, runner and modules that read them.

/** FedKSeed: the cumulative scalar per seed of the pool, [k]. */
export const SEED_SUMS = "seed_sums";
/** FedBPT: the global mean z, [d], and squared step size, [1] (averaging squares pools the step sizes). */
export const BPT_MEAN = "mean";
export const BPT_SIGMA2 = "sigma2";
/** Discrete prompts: the slots' distributions over the phrases, [slots, phrases]. */
export const PROBS = "probs";
