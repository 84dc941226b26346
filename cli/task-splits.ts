// Each task's records in clean train / validation / test splits (src/data/clean-splits.ts), fixed for
// every run and seed: seeds vary the sample, the partition and the training, never which records are
// evaluated. Test sets are sized for a 95% interval of about ±3 points on accuracy where the corpus
// allows (1.96 * sqrt(p(1-p)/n): ±2.95 at p = 0.5 and n = 1,100).
import { type CleanSplits, cleanSplits, contentKey } from "../src/data/clean-splits.ts";
import { splitEvery } from "../src/data/split.ts";
import { type G2pEntry, g2pTask } from "../src/data/tasks/g2p-task.ts";
import { isPlainWord } from "../src/data/tasks/g2p.ts";
import { type SotuAddress, sotuTask } from "../src/data/tasks/sotu.ts";
import { type SpamMail, spamTask } from "../src/data/tasks/spam.ts";
import type { Task } from "../src/data/tasks/task.ts";
import { cmudict, sotuSplit, spamAssassinSplit } from "./corpora.ts";

export type TaskName = "g2p" | "spam" | "sotu";

export const TASK_NAMES: readonly TaskName[] = ["g2p", "spam", "sotu"];

/** Validation and test records per task. */
export const SPLIT_SIZES = {
  spam: { validation: 500, test: 1100 },
  g2p: { validation: 1200, test: 1200 },
} as const;

/**
 * The spam task's records: the half of SpamAssassin that fedflare-mail-4m was not pretrained on, less
 * every mail whose prompt a mail of the pretraining half also gives (resent mails) and every repeat.
 */
export function spamSplits(): CleanSplits<SpamMail> {
  const task = spamTask();
  const key = (m: SpamMail) => contentKey(task, m);
  const { task: records, pretraining } = spamAssassinSplit();
  return cleanSplits(records, key, SPLIT_SIZES.spam, new Set(pretraining.map(key)));
}

/** CMUdict's plain words (one pronunciation each), in word order. No shipped model was pretrained on pronunciations. */
export function g2pSplits(): CleanSplits<G2pEntry> {
  const dict = cmudict();
  const records: G2pEntry[] = Object.keys(dict)
    .filter((w) => isPlainWord(w))
    .sort()
    .map((w) => [w, dict[w]!]);
  return cleanSplits(records, (e) => contentKey(g2pTask, e), SPLIT_SIZES.g2p);
}

/**
 * The State of the Union addresses: the sotu models were pretrained on all but every 10th, so those held
 * out are the evaluation, alternately validation and test; training (continued training, for the task)
 * draws from the rest.
 */
export function sotuSplits(): CleanSplits<SotuAddress> {
  const task = sotuTask({ by: "president" });
  const key = (a: SotuAddress) => contentKey(task, a);
  const { train, heldOut } = sotuSplit();
  const kept = cleanSplits(train, key, { validation: 0, test: 0 });
  const evaluated = cleanSplits(heldOut, key, { validation: 0, test: 0 }, new Set(train.map(key)));
  const { train: validation, heldOut: test } = splitEvery(evaluated.train, 2);
  return {
    train: kept.train,
    validation,
    test,
    dropped: {
      excluded: evaluated.dropped.excluded,
      repeated: kept.dropped.repeated + evaluated.dropped.repeated,
    },
  };
}

export interface TaskSplits<Raw = unknown> extends CleanSplits<Raw> {
  task: Task<Raw>;
}

/** A task by name with its splits. */
export function taskSplits(name: TaskName): TaskSplits {
  if (name === "spam") return { task: spamTask(), ...spamSplits() } as TaskSplits;
  if (name === "g2p") return { task: g2pTask, ...g2pSplits() } as TaskSplits;
  return { task: sotuTask({ by: "president" }), ...sotuSplits() } as TaskSplits;
}
