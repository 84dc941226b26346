// The robustness rows of the quality report (issue 19): `node bench/quality.ts --preset robust`. Ten clients,
// IID, LoRA with FedAvg as the full preset trains it, each client's local steps cut so that a round sees as
// many examples as the full preset's round (its fewer clients) does; each attack (src/fl/attacks/) by 10%, 20% and 30% of
// the clients against each defence (src/fl/robust/), the undefended mean as the baseline, and each defence
// on clean data (what it costs when nobody attacks). A row's name is attack.defence.percent.
import type { QualityTask } from "./quality-rows.ts";

const CLIENTS = 10;

/**
 * The full preset's learning rate times these, tried for the clean federation (tune.lr-x* rows, scored on the
 * validation split only): ten clients of eight steps each move the adapter less a round than the full
 * preset's four of twenty. ×10 and then ×30 were added as g2p's best kept landing on the grid's edge.
 */
const LR_FACTORS = [0.3, 1, 3, 10, 30];
/**
 * The factor each task's rows train at, chosen by the tune rows' last validation loss (seed 0, ten rounds): on
 * spam (LoRA on the label words) 0.2909 at ×0.3, 0.2489 at ×1, 0.2639 at ×3; on g2p 6.7642 at ×0.3, 3.8626 at
 * ×1, 2.7628 at ×3, 2.5041 at ×10, 2.8867 at ×30 (whose loss rose in two of its last four rounds).
 */
const LR_FACTOR: Record<"spam" | "g2p", number> = { spam: 1, g2p: 10 };

/** The attacks, as `fedflare run`'s attack.poison (cli/run-config.ts); label flipping only where there are labels. */
const ATTACKS: Record<string, { label: string; poison: Record<string, unknown>; classification?: true }> = {
  "sign-flip": { label: "sign flip ×1", poison: { type: "sign-flip", scale: 1 } },
  scale: { label: "scaling ×10", poison: { type: "scale", factor: 10 } },
  gaussian: { label: "Gaussian σ 0.1", poison: { type: "gaussian", std: 0.1 } },
  // Within the coordinator's example cap (maxExamplesPerClient, 100,000): a claim above it is refused.
  inflate: { label: "sign flip claiming 100,000 examples", poison: { type: "sign-flip", scale: 1, examples: 100_000 } },
  alie: { label: "a little is enough", poison: { type: "alie" } },
  "label-flip": { label: "label flipping", poison: { type: "label-flip" }, classification: true },
};

/** The attacks' names in the order the report lists them. */
export const ATTACK_NAMES: readonly string[] = Object.keys(ATTACKS);

/**
 * The defences for `attackers` of the clients, as the federation's robust field (none: the plain mean); Bulyan
 * only where the clients reach its 4f + 3.
 */
function defences(attackers: number): Record<string, { label: string; robust?: Record<string, unknown> }> {
  const byzantine = Math.max(attackers, 1);
  const bulyan = { label: `Bulyan f ${byzantine}`, robust: { rule: { name: "bulyan", byzantine } } };
  return {
    none: { label: "FedAvg" },
    median: { label: "median", robust: { rule: { name: "median" } } },
    trimmed: { label: `trimmed mean β ${byzantine / CLIENTS}`, robust: { rule: { name: "trimmed-mean", trim: byzantine / CLIENTS } } },
    krum: { label: `Krum f ${byzantine}`, robust: { rule: { name: "krum", byzantine } } },
    "multi-krum": { label: `Multi-Krum f ${byzantine}`, robust: { rule: { name: "multi-krum", byzantine } } },
    ...(CLIENTS >= 4 * byzantine + 3 ? { bulyan } : {}),
    "geometric-median": { label: "geometric median, uniform weights", robust: { rule: { name: "geometric-median" }, weights: "uniform" } },
    "norm-bound": {
      label: "norm bound at the median, uniform weights",
      robust: { rule: { name: "mean" }, normBound: { bound: "median" }, weights: "uniform" },
    },
  };
}

/**
 * A task's robustness rows over its full-preset LoRA row (`fullClients` clients a round): every attack ×
 * defence × share of attackers, and each defence alone. With `words` (spam's labels and label words) LoRA
 * trains on the label words (src/fl/methods/shared/label-word-training.ts): on its label names, ten clients of eight
 * steps for five rounds never left the majority class (68.0% on test at every learning rate tried), so no
 * attack or defence could move the accuracy.
 */
export function robustRows(
  task: "spam" | "g2p",
  full: { label: string; config: Record<string, unknown> },
  fullClients: number,
  words?: { labels: readonly string[]; labelWords: readonly string[] },
): QualityTask["rows"] {
  const local = full.config.local as { steps: number; lr: number };
  const steps = Math.max(1, Math.round((local.steps * fullClients) / CLIENTS));
  const method = { ...(full.config.method as Record<string, unknown>), ...words };
  const at = (factor: number) => ({ ...full.config, method, local: { ...local, steps, lr: Number((local.lr * factor).toPrecision(12)) } });
  const label = words ? `${full.label} on label words` : full.label;
  const clean = { label, config: at(LR_FACTOR[task]) };
  const rows: QualityTask["rows"] = {};
  for (const factor of LR_FACTORS)
    rows[`tune.lr-x${factor}`] = { label: `${label}, no attackers, lr ×${factor} (tuning run)`, config: at(factor) };
  for (const [name, d] of Object.entries(defences(0)))
    rows[`clean.${name}`] = {
      label: `${clean.label}, no attackers, ${d.label}`,
      config: { ...clean.config, ...(d.robust ? { robust: d.robust } : {}) },
    };
  for (const percent of [10, 20, 30]) {
    const attackers = (percent * CLIENTS) / 100;
    for (const [attack, a] of Object.entries(ATTACKS)) {
      if (a.classification && task !== "spam") continue;
      for (const [name, d] of Object.entries(defences(attackers)))
        rows[`${attack}.${name}.${percent}`] = {
          label: `${a.label} by ${percent}% of the clients, ${d.label}`,
          config: { ...clean.config, attack: { attackers, poison: a.poison }, ...(d.robust ? { robust: d.robust } : {}) },
        };
    }
  }
  return rows;
}

/**
 * Rounds a robust run trains. Not the full preset's five: at five rounds the clean federation's validation
 * accuracy was still rising (80.6, 83.0, 85.6, 89.0 % at rounds 2 to 5, seed 0, lr ×3) and a defended run's
 * swung by up to 16 points from one round to the next (bench/results/quality.json at commit 364b338), so its
 * last round said more about where the swing stopped than about the rule.
 */
const ROUNDS = 10;

/** The robust preset's base settings over a task's full-preset base: ten clients, ROUNDS rounds. */
export const robustBase = (base: Record<string, unknown>) => ({ ...base, clients: CLIENTS, rounds: ROUNDS });
