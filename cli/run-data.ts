// The data of a local run: a seeded sample of the task's training split (cli/task-splits.ts) split among
// the clients by the configured partitioner; every version scored on the validation split, the last one
// also on the test split. Seeds vary the sample and the partition, never the evaluated records.
import type { Example } from "../src/data/jsonl.ts";
import { flipLabels } from "../src/fl/attacks/data-poisoning.ts";
import { shuffled } from "../src/data/lm-windows.ts";
import { dirichletPartitioner } from "../src/data/partitioners/dirichlet.ts";
import { iidPartitioner } from "../src/data/partitioners/iid.ts";
import { naturalPartitioner } from "../src/data/partitioners/natural.ts";
import type { Partitioner } from "../src/data/partitioners/partitioner.ts";
import type { ClassificationTask, Metric } from "../src/data/tasks/task.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import type { RunConfig } from "./run-config.ts";
import { UsageError } from "./usage.ts";
import { taskSplits } from "./task-splits.ts";

export interface RunData {
  partitions: Example[][];
  /** What every version is scored on: the validation split, or `evalExamples` of it in a fixed order. */
  validation: Example[];
  /** What the last version is scored on once, at the end. */
  test: Example[];
  /** Records per partition key, for the summary: which natural groups each client holds. */
  keys: string[][];
  /** A classification task's labels (its completions are " " + label), scored by accuracy. */
  labels?: readonly string[];
  /** The task's metric: exact-match tasks also score greedy answers on the test split. */
  metric: Metric;
}

/** The seed of the order capped validation and test sets are drawn in: the same records for every run and seed. */
const EVALUATION_ORDER = 0x5eed;

export function runData(c: RunConfig): RunData {
  const { task, train, validation, test } = taskSplits(c.task);
  const classes = "labels" in task ? (task as ClassificationTask<unknown>) : null;
  if (c.attack?.poison.type === "label-flip" && !classes)
    throw new UsageError(`attack: label-flip needs a classification task; "${c.task}" has no labels`);
  const sample = shuffled(train, seededUniform(c.seed)).slice(0, c.records);
  let partitioner: Partitioner & { keys?: readonly (readonly string[])[] };
  if (c.partitioner.type === "iid") partitioner = iidPartitioner(sample.length, { numPartitions: c.clients, seed: c.seed });
  else if (c.partitioner.type === "dirichlet")
    partitioner = dirichletPartitioner(sample.map(classes?.label ?? task.partitionKey), {
      numPartitions: c.clients,
      alpha: c.partitioner.alpha,
      seed: c.seed,
    });
  else
    partitioner = naturalPartitioner(
      sample.map((r) => task.partitionKey(r)),
      c.clients,
    );
  const examples = (records: readonly unknown[]) => records.flatMap((r) => task.examples(r));
  // A fixed order (the splits keep the corpus's, grouped by label for spam), so a capped set is a sample of both.
  const fixed = (records: readonly unknown[]) => examples(shuffled(records, seededUniform(EVALUATION_ORDER)));
  return {
    ...(classes ? { labels: classes.labels } : {}),
    metric: task.metric,
    partitions: trained(
      c,
      Array.from({ length: c.clients }, (_, i) => {
        const own = examples(partitioner.loadPartition(i).map((j) => sample[j]));
        return attacker(c, i, "label-flip") ? flipLabels(own, classes!.labels) : own;
      }),
    ),
    validation: fixed(validation).slice(0, c.evalExamples),
    test: fixed(test).slice(0, c.testExamples),
    keys: trained(
      c,
      Array.from({ length: c.clients }, (_, i) => [...(partitioner.keys?.[i] ?? [])]),
    ),
  };
}

/** Client `i`'s id in a run's federation. */
export const clientId = (i: number) => `c${i + 1}`;

/** Whether client `i` of the run attacks (the last `attackers` do), with this poison when given. */
export function attacker(c: RunConfig, i: number, poison?: string): boolean {
  return c.attack !== undefined && i >= c.clients - c.attack.attackers && (poison === undefined || c.attack.poison.type === poison);
}

/** The partitions a run's clients hold: all of them, or a baseline's one client (RunConfig.baseline). */
function trained<T>(c: RunConfig, partitions: T[][]): T[][] {
  if (c.baseline?.type === "centralized") return [partitions.flat()];
  if (c.baseline) return [partitions[c.baseline.client]!];
  return partitions;
}

/** The federation a run creates: its clients per round and local budget; a baseline's is one client's (trained). */
export function federationShape(c: RunConfig): { clientsPerRound: number; local: RunConfig["local"] } {
  const perRound = c.clientsPerRound ?? c.clients;
  if (c.baseline?.type === "centralized") return { clientsPerRound: 1, local: { ...c.local, steps: c.local.steps * perRound } };
  if (c.baseline) return { clientsPerRound: 1, local: c.local };
  return { clientsPerRound: perRound, local: c.local };
}
