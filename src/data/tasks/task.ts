// A task: how raw corpus records become training examples, which key partitions them naturally, and
// which metric scores a model on it.
import type { Example } from "../jsonl.ts";

export type Metric = "perplexity" | "accuracy" | "exact_match";

export interface Task<Raw> {
  readonly name: string;
  readonly metric: Metric;
  /** The examples of one record (a long text may give several). */
  examples(raw: Raw): Example[];
  /** The record's natural partition key (natural.ts). */
  partitionKey(raw: Raw): string;
}

/** A task scored by accuracy: each record has one of `labels`, its completion being " " + label. */
export interface ClassificationTask<Raw, Label extends string = string> extends Task<Raw> {
  readonly metric: "accuracy";
  readonly labels: readonly Label[];
  /** The record's gold label (also the key for Dirichlet label skew). */
  label(raw: Raw): Label;
}
