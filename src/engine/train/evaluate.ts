// Held-out evaluation with whatever adapter the model carries: the mean NLL over the trained positions of
// examples, and classification accuracy by the most probable label words.
import type { TokenizedExample } from "../../data/examples.ts";
import { completionExample, exampleBatch } from "../../data/examples.ts";
import type { Example } from "../../data/jsonl.ts";
import { accuracy, classifyByLogProb } from "../../data/metrics.ts";
import type { ForwardModel } from "../forward.ts";
import { logSoftmax } from "../sampling.ts";
import type { TextTokenizer } from "../tokenizer/load.ts";

/** Mean NLL per trained token. `model` must be built with nll. */
export async function heldOutLoss(
  model: ForwardModel,
  examples: readonly TokenizedExample[],
  batchSize = 8,
  onProgress?: (done: number) => void,
  params?: ReadonlyMap<string, Float32Array>,
): Promise<{ loss: number; tokens: number }> {
  const nlls = await exampleNlls(model, examples, batchSize, onProgress, params);
  // Position 0 is never predicted (exampleBatch).
  const tokens = examples.reduce((n, e) => n + e.trained.slice(1).reduce((a, b) => a + b, 0), 0);
  return { loss: nlls.reduce((a, b) => a + b, 0) / tokens, tokens };
}

/**
 * Summed NLL of each example's trained positions. `model` must be built with nll; `params` feeds a graph
 * built with `inputs` (with a soft prompt, its positions come first and are skipped).
 */
export async function exampleNlls(
  model: ForwardModel,
  examples: readonly TokenizedExample[],
  batchSize = 8,
  onProgress?: (done: number) => void,
  params?: ReadonlyMap<string, Float32Array>,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < examples.length; i += batchSize) {
    const b = exampleBatch(examples.slice(i, i + batchSize), 1);
    const { nll } = await model.run({ ...b, skipLogits: true, ...(params ? { params } : {}) });
    const width = nll!.length / b.ids.length;
    const offset = width - b.ids[0]!.length;
    b.lossWeights.forEach((row, r) => out.push(row.reduce((sum, w, t) => sum + (w ? nll![r * width + offset + t]! : 0), 0)));
    onProgress?.(Math.min(i + batchSize, examples.length));
  }
  return out;
}

/** `e` with `ids` inserted before its completion (its first trained position), themselves untrained. */
export function beforeCompletion(e: TokenizedExample, ids: readonly number[]): TokenizedExample {
  const at = e.trained.indexOf(1);
  if (at < 0 || ids.length === 0) return e;
  return {
    ids: [...e.ids.slice(0, at), ...ids, ...e.ids.slice(at)],
    trained: [...e.trained.slice(0, at), ...ids.map(() => 0), ...e.trained.slice(at)],
  };
}

export interface LabeledPrompt {
  prompt: string;
  label: string;
}

/** A classification task's prompt/completion pairs as labelled prompts (the completion is " " + label); texts are skipped. */
export function labeledPrompts(examples: readonly Example[]): LabeledPrompt[] {
  return examples.flatMap((e) => ("prompt" in e ? [{ prompt: e.prompt, label: e.completion.trim() }] : []));
}

/**
 * Accuracy of picking, for each prompt, the label whose word (" " + word; `words` defaults to the labels)
 * has the highest total log-probability after it. Prompts longer than `maxTokens` minus the word lose
 * their middle (completionExample).
 */
export async function labelAccuracy(
  model: ForwardModel,
  tok: TextTokenizer,
  items: readonly LabeledPrompt[],
  labels: readonly string[],
  opts: {
    maxTokens: number;
    batchSize?: number;
    params?: ReadonlyMap<string, Float32Array>;
    words?: readonly string[];
    after?: readonly number[];
  },
): Promise<{ accuracy: number; predicted: string[]; crossEntropy: number }> {
  checkLabels(items, labels);
  // `after`: ids between each prompt and the label words (an inline soft prompt's).
  const scores = await labelScores(
    model,
    items.map((x) => [...tok.encode(x.prompt), ...(opts.after ?? [])]),
    wordIds(tok, opts.words ?? labels),
    opts,
  );
  return accuracyOfScores(scores, items, labels);
}

/** The index of an example's gold `label` among the task's `labels`; a label not among them is refused, naming both. */
export function goldIndex(label: string, labels: readonly string[]): number {
  const i = labels.indexOf(label);
  if (i < 0) throw new RangeError(`label "${label}" is not one of ${JSON.stringify(labels)}`);
  return i;
}

/** Refuses items whose label is not among `labels`, before any scoring. */
export function checkLabels(items: readonly LabeledPrompt[], labels: readonly string[]): void {
  for (const x of items) goldIndex(x.label, labels);
}

/** Per item, the label with the highest score; the accuracy of those picks and the verbalizer cross-entropy. */
export function accuracyOfScores(
  scores: readonly (readonly number[])[],
  items: readonly LabeledPrompt[],
  labels: readonly string[],
): { accuracy: number; predicted: string[]; crossEntropy: number } {
  const predicted = scores.map((s) => classifyByLogProb(Object.fromEntries(labels.map((l, j) => [l, [s[j]!]]))));
  return {
    accuracy: accuracy(
      predicted,
      items.map((x) => x.label),
    ),
    predicted,
    crossEntropy: verbalizerCrossEntropy(
      scores,
      items.map((x) => goldIndex(x.label, labels)),
    ),
  };
}

/** Each word as the token ids of " " + word, as a completion follows a prompt. */
export function wordIds(tok: TextTokenizer, words: readonly string[]): number[][] {
  return words.map((w) => tok.encode(` ${w}`, { addSpecialTokens: false }));
}

/** The most bytes of logits labelScores copies out of one pass. */
const LOGITS_BYTES = 8 * 2 ** 20;

/** Per prompt (token ids), each label's words' (token ids) total log-probability after it. */
export async function labelScores(
  model: ForwardModel,
  prompts: readonly (readonly number[])[],
  labelIds: readonly (readonly number[])[],
  opts: { maxTokens: number; batchSize?: number; params?: ReadonlyMap<string, Float32Array> },
): Promise<number[][]> {
  // One pass a prompt copies out its logits: as many rows a pass as keep them within LOGITS_BYTES (a
  // Worker's isolate has 128 MB), none with a vocabulary so large that one row's would not fit. A row is at
  // most the window and a prefix soft prompt's positions; an empty prompt has no position to read.
  const positions = opts.maxTokens + model.prefixPositions;
  const rowsPerPass = Math.min(opts.batchSize ?? 8, Math.floor(LOGITS_BYTES / (positions * model.config.vocabSize * 4)));
  if (rowsPerPass >= 1 && labelIds.every((ids) => ids.length === 1) && prompts.every((p) => p.length > 0))
    return nextTokenScores(
      model,
      prompts,
      labelIds.map((ids) => ids[0]!),
      { ...opts, batchSize: rowsPerPass },
    );
  return scoresOfLabelRows(
    await exampleNlls(model, labelRows(prompts, labelIds, opts.maxTokens), opts.batchSize, undefined, opts.params),
    labelIds.length,
  );
}

/**
 * labelScores for words of one token each, from one row a prompt: labelRows' rows for such words differ
 * only in their last token, which no input position sees, so one pass's logits at the position before it
 * score every word (half the passes of two words' rows). `model` must be built with nll.
 */
async function nextTokenScores(
  model: ForwardModel,
  prompts: readonly (readonly number[])[],
  words: readonly number[],
  opts: { maxTokens: number; batchSize?: number; params?: ReadonlyMap<string, Float32Array> },
): Promise<number[][]> {
  const V = model.config.vocabSize;
  const batchSize = opts.batchSize ?? 8;
  const out: number[][] = [];
  for (let i = 0; i < prompts.length; i += batchSize) {
    const rows = labelRows(prompts.slice(i, i + batchSize), [[words[0]!]], opts.maxTokens);
    const b = exampleBatch(rows, 1);
    const { logits } = await model.run({ ...b, ...(opts.params ? { params: opts.params } : {}) });
    // A soft prompt's positions come first (exampleNlls' offset); the word is each row's last target.
    const S = logits.length / (b.ids.length * V);
    const offset = S - b.ids[0]!.length;
    rows.forEach((row, r) => {
      const at = (r * S + offset + row.ids.length - 2) * V;
      const logp = logSoftmax(logits.subarray(at, at + V));
      out.push(words.map((w) => logp[w]!));
    });
  }
  return out;
}

/** The rows that score each prompt with each label's words after it, prompt-major; a long prompt loses its middle (completionExample). */
export function labelRows(
  prompts: readonly (readonly number[])[],
  labelIds: readonly (readonly number[])[],
  maxTokens: number,
): TokenizedExample[] {
  return prompts.flatMap((prompt) => labelIds.map((ids) => completionExample(prompt, ids, maxTokens)));
}

/**
 * Tokenized prompt/completion examples of a classification task as their prompts (up to the completion) and
 * the index of their gold label: the longest label whose ids (" " + label) are the completion, up to its EOS
 * (" 1" begins " 10" but is not its label).
 */
export function promptsAndGold(
  examples: readonly TokenizedExample[],
  labelIds: readonly (readonly number[])[],
): { prompts: number[][]; gold: number[] } {
  const prompts = examples.map((e) => e.ids.slice(0, e.trained.indexOf(1)));
  const gold = examples.map((e) => {
    const completion = e.ids.slice(e.trained.indexOf(1));
    // The longest such label: a completion cut before its EOS may also be a shorter label and its EOS.
    const j = labelIds.reduce(
      (best, ids, i) =>
        completion.length - ids.length <= 1 &&
        ids.every((id, k) => completion[k] === id) &&
        (best < 0 || ids.length > labelIds[best]!.length)
          ? i
          : best,
      -1,
    );
    if (j < 0)
      throw new RangeError("an example's completion is none of the method's labels: is this a classification task with these labels?");
    return j;
  });
  return { prompts, gold };
}

/** labelRows' summed NLLs as scores: per prompt, each label's total log-probability. */
export function scoresOfLabelRows(nlls: readonly number[], labels: number): number[][] {
  return Array.from({ length: nlls.length / labels }, (_, i) => Array.from({ length: labels }, (_, j) => -nlls[i * labels + j]!));
}

/** The verbalizer's cross-entropy (BBT, Sun et al. 2022): the mean of -log softmax over the labels' scores at the gold label. */
export function verbalizerCrossEntropy(scores: readonly (readonly number[])[], gold: readonly number[]): number {
  return (
    scores.reduce((sum, s, i) => {
      const max = Math.max(...s);
      return sum + max + Math.log(s.reduce((a, x) => a + Math.exp(x - max), 0)) - s[gold[i]!]!;
    }, 0) / scores.length
  );
}
