// A federation's differential-privacy setting (DP-FedAvg, McMahan et al. 2018, client level), as the
// operator posts it with the federation config; src/privacy/ applies it and accounts for it.
import * as v from "valibot";
import { MIN_NOISE_MULTIPLIER } from "../privacy/rdp.ts";

export const PrivacyConfig = v.strictObject({
  /**
   * central: the aggregator clips each update it receives and adds the Gaussian noise to the round's mean
   * (it sees the updates, so it must be trusted). distributed: with secureAggregation, each client clips
   * its update and adds its share of the noise before masking (src/privacy/distributed-dp.ts).
   */
  mode: v.optional(v.picklist(["central", "distributed"]), "central"),
  /** The L2 norm each client's update is clipped to (S): a client's most influence on a round; with adaptiveClip, the first round's. */
  clip: v.pipe(v.number(), v.gtValue(0), v.maxValue(1e6)),
  /**
   * The clip follows a quantile of the updates' norms (Andrew et al. 2021, "Differentially Private Learning
   * with Adaptive Clipping"): after each round C ← C · exp(−learningRate · (b̄ − targetQuantile)), b̄ the
   * noised share of updates that were within C. The share's noise (bitNoise, default expected clients / 20)
   * is paid for by raising the updates' noise so the total privacy is that of noiseMultiplier.
   */
  adaptiveClip: v.optional(
    v.strictObject({
      targetQuantile: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1)), 0.5),
      learningRate: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(10)), 0.2),
      bitNoise: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(1e6))),
    }),
  ),
  /**
   * z: the noise's standard deviation on the sum of clipped updates is z · S (> 0: clipping alone is no privacy;
   * at least the accountant's least, src/privacy/rdp.ts).
   */
  noiseMultiplier: v.pipe(v.number(), v.minValue(MIN_NOISE_MULTIPLIER), v.maxValue(1000)),
  /** The δ at which ε is reported: below 1 / (the clients), as a rule. */
  delta: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(0.1)), 1e-5),
  /** The ε a federation may spend: a round that would pass it is refused at opening. Absent: no budget, ε reported. */
  epsilonBudget: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(1000))),
});
export type PrivacyConfig = v.InferOutput<typeof PrivacyConfig>;
