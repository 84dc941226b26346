// A federation's strategy with its privacy setting applied, and the ε its closed rounds have spent: the
// one place the aggregator asks, so no caller branches on whether a federation is private.
import { createStrategy } from "../fl/create-strategy.ts";
import type { Strategy } from "../fl/strategy.ts";
import type { PrivacyConfig } from "../protocol/privacy.ts";
import { withCentralDp } from "./central-dp.ts";
import { withDistributedDp } from "./distributed-dp.ts";
import { DEFAULT_ORDERS, epsilonFromRdp, rdpSubsampledGaussian } from "./rdp.ts";

/** What of a federation's config its strategy and its accountant read. */
export interface PrivateFederation {
  strategy: unknown;
  clients: readonly string[];
  clientsPerRound: number;
  privacy?: PrivacyConfig | undefined;
}

/**
 * The configured strategy, wrapped with central DP where the federation has it. `round`: the closing
 * round's updates (the expected clients while uploads arrive) and the clip in force (the configured one
 * until adaptive clipping moves it).
 */
export function federationStrategy(config: PrivateFederation, round: { updates?: number; clip?: number | undefined } = {}): Strategy {
  const inner = createStrategy(config.strategy);
  const p = config.privacy;
  if (!p) return inner;
  if (p.mode === "distributed")
    return withDistributedDp(inner, { updates: round.updates ?? config.clientsPerRound, expected: config.clientsPerRound });
  return withCentralDp(inner, p, {
    updates: round.updates ?? config.clientsPerRound,
    expected: config.clientsPerRound,
    clip: round.clip ?? p.clip,
  });
}

/** ε at the federation's δ after `rounds` noised rounds, each sampling clientsPerRound of the clients. */
export interface Spent {
  epsilon: number;
  delta: number;
  order: number;
  rounds: number;
}

/**
 * The accountant's view of a private federation after `rounds` closed rounds (null without privacy). The
 * sample rate is clientsPerRound / clients: the rounds sample uniformly without replacement, which the
 * Poisson-sampling analysis approximates (as TensorFlow Federated and Flower account for it).
 */
export function federationEpsilon(config: PrivateFederation, rounds: number): Spent | null {
  const p = config.privacy;
  if (!p) return null;
  const q = config.clientsPerRound / config.clients.length;
  const spent = epsilonFromRdp(
    DEFAULT_ORDERS,
    roundCurve(q, p.noiseMultiplier).map((r) => r * rounds),
    p.delta,
  );
  return { epsilon: spent.epsilon, delta: p.delta, order: spent.order, rounds };
}

/**
 * One round's RDP curve per (sample rate, noise multiplier), computed once: the aggregator reads a private
 * federation's ε on every request (its view), and RDP adds over rounds, so only the conversion runs each time.
 */
const curves = new Map<string, number[]>();
function roundCurve(sampleRate: number, noiseMultiplier: number): number[] {
  const key = `${sampleRate} ${noiseMultiplier}`;
  let curve = curves.get(key);
  if (!curve) {
    // An object holds one federation; a bound keeps a long-lived process's memo small all the same.
    if (curves.size >= 64) curves.clear();
    curve = rdpSubsampledGaussian({ sampleRate, noiseMultiplier, steps: 1 });
    curves.set(key, curve);
  }
  return curve;
}
