// Gradient training on a classification task's label words (prompt-based fine-tuning: LM-BFF, Gao et al.
// 2021; PET), for LoRA and offsite-tuning: each example trains only the word of its gold label after its
// prompt, the loss's softmax over the label words alone, which is the verbalizer cross-entropy the black-box
// methods train on (BBT). A base that already tells the classes apart by some words (fedflare-mail-4m's
// " additional" and " act", chosen by bench/label-words.ts) starts near the task; its label names, never
// learned, start at chance.
import { completionExample, type TokenizedExample } from "../../../data/examples.ts";
import type { Example } from "../../../data/jsonl.ts";
import type { TextTokenizer } from "../../../engine/tokenizer/load.ts";
import { goldIndex, wordIds } from "../../../engine/train/evaluate.ts";
import { MethodError } from "../errors.ts";
import { labelWordsOf } from "./config-fields.ts";
import { verbalizerRefusal, type Verbalizer } from "./held-out.ts";

/** What a client trains on with method.labels: the words' token ids, and its examples as word rows. */
export interface LabelWordTraining {
  /** One token id a label, in the order of method.labels. */
  vocabulary: number[];
  /**
   * The client's examples as prompt + the gold label's word, only the word trained, each prompt cut as held-out
   * scoring cuts it (labelRows): the window's room does not depend on the label's length.
   */
  examples(raw: readonly Example[]): TokenizedExample[];
}

/**
 * The label-word training of `m` under `tok`, or null without method.labels; `method` names the method in its
 * errors. A word of more than one token is refused: the loss is one softmax at the position after the prompt.
 */
export function labelWordTraining(m: Verbalizer, tok: TextTokenizer, maxTokens: number, method: string): LabelWordTraining | null {
  if (!m.labels) return null;
  const labels = m.labels;
  const words = labelWordsOf({ labels, labelWords: m.labelWords });
  const vocabulary = wordIds(tok, words).map((ids, i) => {
    if (ids.length !== 1)
      throw new MethodError(
        "method_invalid",
        `${method}'s label words are one token each in the model's vocabulary; " ${words[i]}" is ${ids.length}: ` +
          "choose another word in method.labelWords",
      );
    return ids[0]!;
  });
  if (new Set(vocabulary).size !== vocabulary.length)
    throw new MethodError(
      "method_invalid",
      `method.labelWords ${JSON.stringify(words)} name one token twice: each label needs its own word`,
    );
  return {
    vocabulary,
    examples: (raw) =>
      raw.map((e) => {
        if (!("prompt" in e))
          throw new RangeError(`${method} on label words trains prompt/completion pairs; a record here is a plain text`);
        return completionExample(tok.encode(e.prompt), [vocabulary[goldIndex(e.completion.trim(), labels)]!], maxTokens);
      }),
  };
}

/** Why `m`'s label words cannot train on `task` (a run side's taskRefusal), or null: the task has no labels, or lacks one. */
export function labelWordRefusal(m: Verbalizer, task: { name: string; labels: readonly string[] | null }, method: string): string | null {
  if (!m.labels) return null;
  if (!task.labels) return `method.labels trains ${method} on a classification task's label words, not ${task.name}`;
  return verbalizerRefusal({ labels: m.labels, labelWords: labelWordsOf({ labels: m.labels, labelWords: m.labelWords }) }, task);
}
