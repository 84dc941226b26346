// A secure federation's SecAgg+ round: its settings with their defaults (checked when the federation is
// created), and the parameters the aggregator and each client derive alike for a round.
import type { FederationConfig } from "../protocol/federation.ts";
import { clientNoiseStd } from "../privacy/distributed-dp.ts";
import { defaultDegree, degreeForDropouts } from "./graph.ts";
import { secureEncoding, type SecureEncoding } from "./masked-update.ts";
import { type SecAggRound, secAggRound } from "./protocol.ts";

export interface SecureSettings {
  degree: number;
  threshold: number;
  range: number;
  maxWeight: number;
  phaseSeconds: number;
  /** With distributed DP: the clip each client holds its update to and the noise it adds (distributed-dp.ts). */
  noise?: { clip: number; std: number };
}

/** The clients' neighbours in a round of n: the degree, or n − 1 on the complete graph. */
const neighboursOf = (n: number, degree: number) => (n <= degree + 1 ? n - 1 : degree);

/** The settings of a federation with secureAggregation, defaults filled; SecAggError when a round of clientsPerRound could not run them. */
export function secureSettings(config: FederationConfig): SecureSettings {
  const s = config.secureAggregation!;
  const n = config.clientsPerRound;
  const degree = s.degree ?? (s.dropoutRate === undefined ? defaultDegree(n) : degreeForDropouts(n, s.dropoutRate));
  const threshold = s.threshold ?? Math.max(2, Math.floor(neighboursOf(n, degree) / 2) + 1);
  const settings: SecureSettings = {
    degree,
    threshold,
    range: s.range,
    maxWeight: s.maxWeight ?? config.maxExamplesPerClient,
    phaseSeconds: s.phaseSeconds,
  };
  const p = config.privacy;
  if (p?.mode === "distributed") {
    // Unit weights (DP-FedAvg); the range holds a clipped value and its noise to six standard deviations.
    const std = clientNoiseStd(p, Math.max(threshold, config.minClients));
    Object.assign(settings, { maxWeight: 1, range: Math.max(s.range, p.clip + 6 * std), noise: { clip: p.clip, std } });
  }
  // The graph's degrees depend on n alone: a round of stand-in ids checks the threshold against them.
  secAggRound(
    "check",
    Array.from({ length: n }, (_, i) => `c${i}`),
    { degree, threshold, seed: 0, length: 1 },
  );
  secureEncoding({ range: settings.range, maxWeight: settings.maxWeight, clients: n, values: 1 });
  return settings;
}

/** A round's SecAgg+ parameters over its sampled clients, and the encoding of updates of `values` values. */
export function secureRound(
  config: FederationConfig,
  federation: { id: string; createdAt: number },
  round: number,
  sampled: readonly string[],
  values: number,
): { round: SecAggRound; enc: SecureEncoding; settings: SecureSettings } {
  const settings = secureSettings(config);
  return {
    // The context names the federation's creation too: an id deleted and reused starts new contexts.
    round: secAggRound(`${federation.id}/${federation.createdAt}/${round}`, sampled, {
      degree: settings.degree,
      threshold: settings.threshold,
      seed: ((config.seed * 100_003 + round) * 7 + 3) >>> 0,
      length: values + 1,
    }),
    enc: secureEncoding({ range: settings.range, maxWeight: settings.maxWeight, clients: config.clientsPerRound, values }),
    settings,
  };
}
