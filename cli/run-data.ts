// The data of a local run: a seeded sample of the task's corpus, every 10th record held out for the
// runner's evaluation, the rest split among the clients by the configured partitioner.
import type { Example } from "../src/data/jsonl.ts";
import { shuffled } from "../src/data/lm-windows.ts";
import { dirichletPartitioner } from "../src/data/partitioners/dirichlet.ts";
import { iidPartitioner } from "../src/data/partitioners/iid.ts";
import { naturalPartitioner } from "../src/data/partitioners/natural.ts";
import type { Partitioner } from "../src/data/partitioners/partitioner.ts";
import { splitEvery } from "../src/data/split.ts";
import { g2pTask, type G2pEntry } from "../src/data/tasks/g2p-task.ts";
import { isPlainWord } from "../src/data/tasks/g2p.ts";
import { sotuTask } from "../src/data/tasks/sotu.ts";
import { spamTask } from "../src/data/tasks/spam.ts";
import type { ClassificationTask, Task } from "../src/data/tasks/task.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { cmudict, sotuAddresses, spamAssassinSplit } from "./corpora.ts";
import type { RunConfig } from "./run-config.ts";

export interface RunData {
  partitions: Example[][];
  heldOut: Example[];
  /** Records per partition key, for the summary: which natural groups each client holds. */
  keys: string[][];
  /** A classification task's labels (its completions are " " + label), scored by accuracy. */
  labels?: readonly string[];
}

interface Corpus<Raw> {
  task: Task<Raw>;
  raws: Raw[];
  /** Labels for Dirichlet skew; the partition key where the task has no labels. */
  label: (raw: Raw) => string;
}

function corpus(c: RunConfig): Corpus<unknown> {
  if (c.task === "g2p") {
    const dict = cmudict();
    const raws: G2pEntry[] = Object.keys(dict)
      .filter((w) => isPlainWord(w))
      .sort()
      .map((w) => [w, dict[w]!]);
    return { task: g2pTask, raws, label: g2pTask.partitionKey } as Corpus<unknown>;
  }
  if (c.task === "spam") {
    const task = spamTask();
    // The half of the corpus that fedflare-mail-4m was not pretrained on, whatever the model.
    return { task, raws: spamAssassinSplit().task, label: task.label } as Corpus<unknown>;
  }
  const task = sotuTask({ by: "president" });
  return { task, raws: sotuAddresses(), label: task.partitionKey } as Corpus<unknown>;
}

export function runData(c: RunConfig): RunData {
  const { task, raws, label } = corpus(c);
  const sample = shuffled(raws, seededUniform(c.seed)).slice(0, c.records);
  const { train, heldOut } = splitEvery(sample, 10);
  let partitioner: Partitioner & { keys?: readonly (readonly string[])[] };
  if (c.partitioner.type === "iid") partitioner = iidPartitioner(train.length, { numPartitions: c.clients, seed: c.seed });
  else if (c.partitioner.type === "dirichlet")
    partitioner = dirichletPartitioner(train.map(label), { numPartitions: c.clients, alpha: c.partitioner.alpha, seed: c.seed });
  else
    partitioner = naturalPartitioner(
      train.map((r) => task.partitionKey(r)),
      c.clients,
    );
  const partitions = Array.from({ length: c.clients }, (_, i) => partitioner.loadPartition(i).flatMap((j) => task.examples(train[j])));
  return {
    ...("labels" in task ? { labels: (task as ClassificationTask<unknown>).labels } : {}),
    partitions,
    heldOut: heldOut.flatMap((r) => task.examples(r)).slice(0, c.evalExamples),
    keys: Array.from({ length: c.clients }, (_, i) => [...(partitioner.keys?.[i] ?? [])]),
  };
}
