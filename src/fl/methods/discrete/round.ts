// A client's round of discrete prompt learning (BDPL, Diao et al. 2023): each step samples `population`
// prompts from the slot distributions, scores each on a batch of the client's labelled prompts through a
// row scorer (an OpenAI-compatible API, or a local model), and takes one variance-reduced policy-gradient
// step on the verbalizer cross-entropy. Rows are token ids: [special tokens] phrases "\n" prompt label,
// or with the suffix placement [special tokens] prompt phrases label.
import type { TokenizedExample } from "../../../data/examples.ts";
import { shuffled } from "../../../data/lm-windows.ts";
import { argmax, roundStream } from "../../../engine/sampling.ts";
import { leadingSpecialIds, type TextTokenizer } from "../../../engine/tokenizer/load.ts";
import type { PromptPlacement } from "../shared/config-fields.ts";
import {
  exampleNlls,
  goldIndex,
  labelRows,
  scoresOfLabelRows,
  verbalizerCrossEntropy,
  type LabeledPrompt,
} from "../../../engine/train/evaluate.ts";
import type { ForwardModel } from "../../../engine/forward.ts";
import { charge, noUsage, type ApiUsage, type RowScorer } from "./completions-api.ts";
import { policyGradientStep, samplePrompt } from "./policy-gradient.ts";

/** A discrete-prompt version: the slots' distributions over the phrases, [slots, phrases]. */
export const PROBS = "probs";

/** The token ids prompts are assembled from. */
export interface PromptTokens {
  /** The tokenizer's leading special tokens (BOS), kept first. */
  head: number[];
  /** Each candidate phrase, with its leading space. */
  phrases: number[][];
  /** Between the prompt's phrases and the example. */
  separator: number[];
  /** Each label's words (" " + label). */
  labels: number[][];
  /** Before the example, or between it and the label words. */
  placement: PromptPlacement;
}

export interface DiscreteItem {
  /** The example's prompt without special tokens. */
  body: number[];
  gold: number;
}

export function promptTokens(
  tok: TextTokenizer,
  phrases: readonly string[],
  labels: readonly string[],
  placement: PromptPlacement = "prefix",
): PromptTokens {
  const bare = (s: string) => tok.encode(s, { addSpecialTokens: false });
  // The special tokens before the text (BOS); any the tokenizer appends (EOS) do not belong mid-row.
  return {
    head: leadingSpecialIds(tok),
    phrases: phrases.map((p) => bare(` ${p}`)),
    separator: bare("\n"),
    labels: labels.map((l) => bare(` ${l}`)),
    placement,
  };
}

export function discreteItems(tok: TextTokenizer, items: readonly LabeledPrompt[], labels: readonly string[]): DiscreteItem[] {
  return items.map((x) => ({ body: tok.encode(x.prompt, { addSpecialTokens: false }), gold: goldIndex(x.label, labels) }));
}

/** The rows scoring `items` under a prompt (phrase indices per slot, or none), item-major then label. */
function promptedRows(
  t: PromptTokens,
  choice: readonly number[] | null,
  items: readonly DiscreteItem[],
  maxTokens: number,
): TokenizedExample[] {
  const phrases = choice ? choice.flatMap((k) => t.phrases[k]!) : [];
  // A suffix stays whole when the example is cut: head+tail truncation keeps the prompt's last quarter.
  const row = (x: DiscreteItem) =>
    t.placement === "suffix" ? [...t.head, ...x.body, ...phrases] : [...t.head, ...(choice ? [...phrases, ...t.separator] : []), ...x.body];
  return labelRows(items.map(row), t.labels, maxTokens);
}

/** Per item, each label's score (summed log-prob) under a prompt. */
export async function promptScores(
  scorer: RowScorer,
  t: PromptTokens,
  choice: readonly number[] | null,
  items: readonly DiscreteItem[],
  maxTokens: number,
  usage: ApiUsage = noUsage(),
): Promise<number[][]> {
  return scoresOfLabelRows(await scorer(promptedRows(t, choice, items, maxTokens), usage), t.labels.length);
}

/** A prompt on items: accuracy, the verbalizer cross-entropy, and the gold label words' NLL per token. */
export async function promptAccuracy(
  scorer: RowScorer,
  t: PromptTokens,
  choice: readonly number[] | null,
  items: readonly DiscreteItem[],
  maxTokens: number,
  usage?: ApiUsage,
): Promise<{ accuracy: number; crossEntropy: number; labelNll: number; predicted: number[] }> {
  const scores = await promptScores(scorer, t, choice, items, maxTokens, usage);
  const predicted = scores.map((s) => argmax(s));
  const correct = predicted.filter((p, i) => p === items[i]!.gold).length;
  const labelNll = scores.reduce((sum, s, i) => sum - s[items[i]!.gold]!, 0) / items.reduce((n, x) => n + t.labels[x.gold]!.length, 0);
  return {
    accuracy: correct / items.length,
    crossEntropy: verbalizerCrossEntropy(
      scores,
      items.map((x) => x.gold),
    ),
    labelNll,
    predicted,
  };
}

/** Scores rows with a local model (one "request" per call): the same numbers an API's echoed log-probs give. */
export function localRowScorer(model: ForwardModel, batchSize = 8): RowScorer {
  return async (rows, usage) => {
    charge(usage, rows);
    return exampleNlls(model, rows, batchSize);
  };
}

export interface DiscreteState {
  distributions: number[][];
  step: number;
  usage: ApiUsage;
  /** The mean verbalizer cross-entropy of the last step's sampled prompts. */
  lastLoss: number;
  /** The query budget could not pay for another step. */
  exhausted: boolean;
}

export function startDiscrete(global: number[][]): DiscreteState {
  return { distributions: global.map((p) => [...p]), step: 0, usage: noUsage(), lastLoss: NaN, exhausted: false };
}

export interface DiscreteOptions {
  /** The round's steps in all (the job's, not this call's). */
  steps: number;
  population: number;
  lr: number;
  batchSize: number;
  maxTokens: number;
  /** Rows this client may score in the round. */
  budget?: number;
  clientSeed: number;
  round: number;
}

/** Up to `maxSteps` more steps (resumable: the state is plain data and each step's draws depend on the step only). */
export async function discreteSteps(
  scorer: RowScorer,
  t: PromptTokens,
  items: readonly DiscreteItem[],
  state: DiscreteState,
  maxSteps: number,
  o: DiscreteOptions,
): Promise<DiscreteState> {
  let next = structuredClone(state);
  const batchSize = Math.min(o.batchSize, items.length);
  const rowsPerStep = o.population * batchSize * t.labels.length;
  for (let i = 0; i < maxSteps && next.step < o.steps; i++) {
    if (o.budget !== undefined && next.usage.rows + rowsPerStep > o.budget) return { ...next, exhausted: true };
    const batch = shuffled(items, roundStream(o.clientSeed, o.round, 0, next.step)).slice(0, batchSize);
    const u = roundStream(o.clientSeed, o.round, 1, next.step);
    const prompts = Array.from({ length: o.population }, () =>
      samplePrompt(
        next.distributions,
        next.distributions.map(() => u()),
      ),
    );
    // All sampled prompts' rows in one scorer call: one API request when they fit.
    const scores = scoresOfLabelRows(
      await scorer(
        prompts.flatMap((p) => promptedRows(t, p, batch, o.maxTokens)),
        next.usage,
      ),
      t.labels.length,
    );
    const samples = prompts.map((prompt, j) => ({
      prompt,
      loss: verbalizerCrossEntropy(
        scores.slice(j * batchSize, (j + 1) * batchSize),
        batch.map((x) => x.gold),
      ),
    }));
    next = {
      ...next,
      distributions: policyGradientStep(next.distributions, samples, o.lr),
      step: next.step + 1,
      lastLoss: samples.reduce((s, x) => s + x.loss, 0) / samples.length,
    };
  }
  return next;
}

/** A version's distributions tensor [slots, phrases] as the slots' distributions. */
export function distributionsOf(
  tensors: ReadonlyMap<string, Float32Array>,
  shape: { slots: number; phrases: readonly string[] },
): number[][] {
  const probs = tensors.get(PROBS);
  const n = shape.phrases.length;
  if (!probs || probs.length !== shape.slots * n)
    throw new RangeError(`a discrete-prompt version holds "${PROBS}" with ${shape.slots} x ${n} numbers`);
  return Array.from({ length: shape.slots }, (_, s) => [...probs.subarray(s * n, (s + 1) * n)]);
}

/** A client's upload: its distributions minus the global ones (FedAvg's fold then averages the distributions). */
export function discreteDelta(global: readonly (readonly number[])[], local: readonly (readonly number[])[]): Map<string, Float32Array> {
  return new Map([[PROBS, Float32Array.from(local.flat().map((p, i) => p - global.flat()[i]!))]]);
}

/** The prompt BDPL evaluates: each slot's most probable phrase. */
export function bestPrompt(distributions: readonly (readonly number[])[]): number[] {
  return distributions.map((p) => argmax(p));
}
