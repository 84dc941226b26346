// Evaluation metrics from numbers a model produced elsewhere: perplexity for language modelling,
// accuracy for classification (the label whose completion is most probable), exact match and the phoneme
// error rate for g2p.
import { DataError } from "./errors.ts";

/** exp(mean NLL per token), from a summed negative log-likelihood (nats) over `tokens` predicted tokens. */
export function perplexityFromNll(sumNll: number, tokens: number): number {
  if (!(tokens > 0)) throw new DataError("dataset_empty", `perplexity needs at least one token, got ${tokens}`);
  return Math.exp(sumNll / tokens);
}

function matchRate(predicted: readonly string[], gold: readonly string[], same: (p: string, g: string) => boolean): number {
  if (predicted.length !== gold.length)
    throw new DataError("metric_inputs_mismatched", `${predicted.length} predictions for ${gold.length} gold answers`);
  if (gold.length === 0) throw new DataError("dataset_empty", "no answers to score");
  return predicted.filter((p, i) => same(p, gold[i]!)).length / gold.length;
}

/** The fraction of predictions equal to the gold labels. */
export function accuracy(predicted: readonly string[], gold: readonly string[]): number {
  return matchRate(predicted, gold, (p, g) => p === g);
}

/**
 * The mean over the gold labels present of the share of their examples predicted right (per-class
 * recall): 1 / (number of labels) for any constant prediction, so it tells learning the label prior
 * apart from telling the classes apart, where plain accuracy on a skewed set does not.
 */
export function balancedAccuracy(predicted: readonly string[], gold: readonly string[]): number {
  const classes = [...new Set(gold)];
  return (
    classes.reduce(
      (s, c) =>
        s +
        accuracy(
          predicted.filter((_, i) => gold[i] === c),
          gold.filter((g) => g === c),
        ),
      0,
    ) / classes.length
  );
}

/** Trimmed, whitespace runs collapsed to one space; case and stress digits kept (" AH0  B " → "AH0 B"). */
export function normalizeAnswer(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

/** The fraction of predictions equal to the gold answers after normalizeAnswer. */
export function exactMatch(predicted: readonly string[], gold: readonly string[]): number {
  return matchRate(predicted, gold, (p, g) => normalizeAnswer(p) === normalizeAnswer(g));
}

/** The Levenshtein distance between two sequences: the fewest insertions, deletions and substitutions. */
export function editDistance<T>(a: readonly T[], b: readonly T[]): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length]!;
}

/**
 * The edit distance between the whitespace-separated units of each prediction and its gold answer, summed
 * and divided by the gold answers' units (the word error rate's definition; over ARPAbet phonemes it is the
 * phoneme error rate g2p reports, Bisani and Ney 2008). It can pass 1 when predictions run long.
 */
export function unitErrorRate(predicted: readonly string[], gold: readonly string[]): number {
  const units = (s: string) => normalizeAnswer(s).split(" ").filter(Boolean);
  const total = gold.reduce((n, g) => n + units(g).length, 0);
  if (predicted.length !== gold.length)
    throw new DataError("metric_inputs_mismatched", `${predicted.length} predictions for ${gold.length} gold answers`);
  if (total === 0) throw new DataError("dataset_empty", "no gold units to score");
  return predicted.reduce((n, p, i) => n + editDistance(units(p), units(gold[i]!)), 0) / total;
}

/**
 * The label whose completion tokens have the highest total log-probability given the prompt
 * (`tokenLogProbs[label]`: log p of each completion token); ties go to the label listed first.
 */
export function classifyByLogProb<Label extends string>(tokenLogProbs: Readonly<Record<Label, readonly number[]>>): Label {
  let best: Label | undefined;
  let bestTotal = -Infinity;
  for (const label of Object.keys(tokenLogProbs) as Label[]) {
    const total = tokenLogProbs[label].reduce((a, b) => a + b, 0);
    if (best === undefined || total > bestTotal) [best, bestTotal] = [label, total];
  }
  if (best === undefined) throw new DataError("dataset_empty", "no labels to choose from");
  return best;
}

/** The normal quantile of a two-sided 95% interval. */
const Z95 = 1.959963984540054;

/**
 * The Wilson score interval (Wilson 1927) of a proportion: `successes` of `n`, at 95%. Unlike the normal
 * approximation it stays inside [0, 1] and is not zero-width at 0 or n successes.
 */
export function wilsonInterval(successes: number, n: number, z = Z95): { low: number; high: number } {
  if (!(n > 0)) throw new DataError("dataset_empty", `an interval needs at least one trial, got ${n}`);
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/**
 * The area under the ROC curve of `scores` for telling the positives from the rest: the probability that a
 * random positive scores above a random negative, ties counting a half (the Mann-Whitney U statistic over
 * the product of the classes' sizes).
 */
export function rocAuc(scores: readonly number[], positive: readonly boolean[]): number {
  if (scores.length !== positive.length)
    throw new DataError("metric_inputs_mismatched", `${scores.length} scores for ${positive.length} labels`);
  const order = scores.map((s, i) => [s, i] as const).sort((a, b) => a[0] - b[0]);
  // Average ranks (1-based) over runs of equal scores.
  const ranks = new Float64Array(scores.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) ranks[order[k]![1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  const pos = positive.filter(Boolean).length;
  const neg = positive.length - pos;
  if (pos === 0 || neg === 0) throw new DataError("dataset_empty", "an ROC AUC needs both positives and negatives");
  const rankSum = positive.reduce((s, p, i) => (p ? s + ranks[i]! : s), 0);
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}
