// Config fields several methods share: bounded numbers, and the verbalizer of the label-scoring methods.
import * as v from "valibot";

export const int = (min: number, max = Number.MAX_SAFE_INTEGER) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));
/** A number in (0, max]: learning rates, scales and step sizes are bounded so no config turns a version into infinities. */
export const upTo = (max: number) => v.pipe(v.number(), v.gtValue(0), v.maxValue(max));
/** A classification task's labels: its completions are " " + label. */
export const labels = v.pipe(
  v.array(v.pipe(v.string(), v.minLength(1))),
  v.minLength(2),
  v.check((xs) => new Set(xs).size === xs.length, "method.labels are distinct"),
);
/**
 * The verbalizer (PET, Schick and Schütze 2021; BBT): the word scored for each label, in the order of
 * `labels`, as " " + word. Defaults to the labels themselves; a base that was never taught the task's
 * label names ("ham" may even be two rare tokens) may still tell the classes apart by other words.
 */
export const labelWords = v.optional(v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(2)));
/**
 * Where a learned prompt goes: "prefix" before the example (BBT, BDPL), or "suffix" between the example
 * and its label words, as AutoPrompt's trigger tokens (Shin et al. 2020). A small causal model barely
 * sees a prefix a hundred tokens back: on fedflare-mail-4m, no prefix phrase moves the spam task's label
 * scores by 0.1 nats, while suffix phrases move them by up to 2.
 */
export const placement = v.optional(v.picklist(["prefix", "suffix"]), "prefix");
export type PromptPlacement = "prefix" | "suffix";

/** The check every verbalizer config carries: one label word per label, in the order of the labels. */
export const wordPerLabel = <T extends { labels?: readonly string[] | undefined; labelWords?: readonly string[] | undefined }>() =>
  v.check<T, string>(
    (m) => m.labelWords === undefined || m.labelWords.length === m.labels?.length,
    "method.labelWords needs one word per label, in the order of method.labels",
  );

/** The words a method scores for its labels: its labelWords, or the labels themselves. */
export function labelWordsOf(m: { labels: readonly string[]; labelWords?: readonly string[] | undefined }): readonly string[] {
  return m.labelWords ?? m.labels;
}
