// What `fedflare run` reports: a round's record (a line of metrics.jsonl: the version's scores on the
// validation split), the clients' costs it carries, and at the end the last version's scores on the test
// split (test.json), plot.svg, the table of rounds, the final adapter folder and the closing lines.
import type { RobustSummary } from "../../durable-objects/aggregator/buffered-updates.ts";
import { wilsonInterval } from "../../src/data/metrics.ts";
import type { Scored } from "../../src/fl/methods/method.ts";
import { linePlotSvg } from "../../src/report/line-plot.ts";
import { formatTable } from "../../src/report/table.ts";
import type { RunConfig } from "../run-config.ts";
import { writeFiles } from "../write-files.ts";

export interface RoundRecord {
  round: number;
  status: string;
  version: number;
  uploads: number;
  train_loss: number | null;
  validation_loss: number;
  /** Classification tasks: the share of validation examples whose label words are the most probable. */
  validation_accuracy?: number | null;
  /** The same, as the mean per-label recall: a constant answer scores 1 / labels however skewed the data. */
  validation_balanced_accuracy?: number | null;
  seconds: number;
  /** A private federation's ε after this round, at its δ (src/privacy/). */
  epsilon?: number;
  /**
   * federatedEvaluation: the clients' own scores of the version on their shares of the validation split, in
   * their workers, as the aggregator folds their reports (example-weighted): the deployed path.
   */
  federated_loss?: number;
  /** What a sampled client spent in the round (means over the clients that uploaded). */
  clients?: ClientCost;
  /** A robust federation's round: what its rule did (the clients it clipped or kept), as the round's result says. */
  robust?: RobustSummary;
}

export interface ClientCost {
  /** The update's body, as uploaded. */
  upload_bytes: number;
  /** The version (or FedKSeed's per-seed changes) fetched to start the round. */
  download_bytes: number;
  /** Discrete prompts: rows scored at the completions API, and the requests they took. */
  api_rows?: number;
  api_requests?: number;
  /** CPU seconds of the workerd process (client workers and the aggregator's folds) per sampled client; null without /proc. */
  cpu_seconds: number | null;
}

export const scoreFields = (s: Scored) => ({
  validation_loss: s.loss,
  validation_accuracy: s.accuracy,
  validation_balanced_accuracy: s.balanced,
});

/** A round that failed leaves the model as it was: its scores are the last round's. */
export const previous = (r: RoundRecord): Scored => ({
  loss: r.validation_loss,
  accuracy: r.validation_accuracy ?? null,
  balanced: r.validation_balanced_accuracy ?? null,
});

/** The last version's scores on the test split (test.json), with the 95% Wilson intervals of its accuracy and exact match. */
export interface TestRecord extends Scored {
  version: number;
  examples: number;
  accuracy_interval: { low: number; high: number } | null;
  exact_match_interval?: { low: number; high: number };
}

export function testRecord(version: number, examples: number, s: Scored): TestRecord {
  const interval = (share: number) => wilsonInterval(Math.round(share * examples), examples);
  return {
    version,
    examples,
    ...s,
    accuracy_interval: s.accuracy === null ? null : interval(s.accuracy),
    ...(s.generated ? { exact_match_interval: interval(s.generated.exactMatch) } : {}),
  };
}

/** The test line the run prints last: loss, accuracy (classification) or exact match and error rate (greedy answers), with intervals. */
export function testLine(t: TestRecord): string {
  const pct = (x: number) => (100 * x).toFixed(1);
  const generated = t.generated
    ? `, exact match ${pct(t.generated.exactMatch)} % (95% interval ${pct(t.exact_match_interval!.low)}-` +
      `${pct(t.exact_match_interval!.high)}), error rate ${pct(t.generated.errorRate)} % of the answers' units`
    : "";
  const accuracy =
    t.accuracy === null
      ? ""
      : `, accuracy ${pct(t.accuracy)} % (95% interval ${pct(t.accuracy_interval!.low)}-${pct(t.accuracy_interval!.high)}), ` +
        `balanced ${pct(t.balanced!)} %`;
  return `test (${t.examples} examples, version ${t.version}): loss ${t.loss.toFixed(4)}${accuracy}${generated}`;
}

/** The clients' costs of a round, from their job views: each upload's size and the metrics it declared. */
export function clientCost(
  uploads: readonly { bytes: number; metrics: Record<string, number> }[],
  cpuSeconds: number | null,
  sampled: number,
): ClientCost | undefined {
  if (uploads.length === 0) return undefined;
  const metrics = uploads.map((u) => u.metrics);
  const mean = (f: (i: number) => number) => uploads.reduce((s, _, i) => s + f(i), 0) / uploads.length;
  const api =
    metrics[0]!.api_rows === undefined
      ? {}
      : { api_rows: mean((i) => metrics[i]!.api_rows ?? 0), api_requests: mean((i) => metrics[i]!.api_requests ?? 0) };
  return {
    upload_bytes: mean((i) => uploads[i]!.bytes),
    download_bytes: mean((i) => metrics[i]!.download_bytes ?? 0),
    ...api,
    cpu_seconds: cpuSeconds === null ? null : cpuSeconds / sampled,
  };
}

/** A closed round's progress line. */
export function roundLine(r: RoundRecord): string {
  return (
    `round ${r.round} ${r.status}: train loss ${r.train_loss?.toFixed(4) ?? "-"}, validation loss ` +
    `${r.validation_loss.toFixed(4)}${r.validation_accuracy == null ? "" : `, accuracy ${(100 * r.validation_accuracy).toFixed(1)} %`}` +
    `${r.federated_loss === undefined ? "" : `, federated loss ${r.federated_loss.toFixed(4)}`}` +
    `${r.epsilon === undefined ? "" : `, ε ${r.epsilon.toFixed(3)}`}` +
    `${r.robust ? `, ${ruleNote(r.robust)}` : ""} (${r.seconds.toFixed(1)} s)`
  );
}

/** What a robust round's rule did, for its round line: whom Krum kept, how many the norm bound clipped. */
function ruleNote(s: RobustSummary): string {
  const parts: string[] = [s.rule];
  if (s.normBound) parts.push(`clipped ${s.normBound.clipped} of ${s.updates} to norm ${s.normBound.bound.toPrecision(3)}`);
  if (s.selected) parts.push(`kept ${s.selected.count} of ${s.updates} (${[...s.selected.clients].sort(byName).join(" ")})`);
  if (s.geometricMedian) parts.push(`${s.geometricMedian.iterations} Weiszfeld iterations`);
  return parts.join(" ");
}

/** Client ids in their natural order (c2 before c10). */
const byName = (a: string, b: string) => a.localeCompare(b, "en", { numeric: true });

/** The losses per round as an SVG line plot. */
export function lossPlot(records: readonly RoundRecord[], config: RunConfig): string {
  const points = (f: (r: RoundRecord) => number | null) => records.filter((r) => f(r) !== null).map((r) => [r.round, f(r)!] as const);
  return linePlotSvg(
    [
      { name: "validation loss", points: points((r) => r.validation_loss), color: "#d62728" },
      { name: "clients' train loss (weighted)", points: points((r) => r.train_loss), color: "#1f77b4" },
    ],
    {
      title: `fedflare run: ${config.task}, ${config.clients} clients, ${config.strategy.name}`,
      xLabel: "round",
      yLabel: "loss (nats per token)",
      integerX: true,
    },
  );
}

/** The rounds as a text table; the accuracy column for classification tasks. */
export function roundsTable(records: readonly RoundRecord[], withAccuracy: boolean): string {
  const private_ = records.some((r) => r.epsilon !== undefined);
  return formatTable(
    [
      "round",
      "status",
      "uploads",
      "train loss",
      "validation loss",
      ...(withAccuracy ? ["validation accuracy %"] : []),
      ...(private_ ? ["ε"] : []),
      "seconds",
    ],
    records.map((r) => [
      r.round,
      r.status,
      r.uploads,
      r.train_loss?.toFixed(4) ?? "-",
      r.validation_loss.toFixed(4),
      ...(withAccuracy ? [r.validation_accuracy == null ? "-" : (100 * r.validation_accuracy).toFixed(1)] : []),
      ...(private_ ? [r.epsilon?.toFixed(3) ?? "-"] : []),
      r.seconds.toFixed(1),
    ]),
  );
}

/** The final version as an adapter folder, as the coordinator serves it: its tensors and its description. */
export function writeAdapter(dir: string, final: { safetensors: Uint8Array; description: string }): void {
  writeFiles(dir, [
    ["adapter_config.json", final.description],
    ["adapter_model.safetensors", final.safetensors],
  ]);
}

/** What the run prints last: the table, where its folder is, and how to use the final version. */
export function summary(table: string, run: { test: string; dir: string; seconds: number; adapterDir: string; usage: string }): string {
  return [
    table,
    run.test,
    "",
    `run folder: ${run.dir} (${run.seconds.toFixed(0)} s)`,
    `adapter:    ${run.adapterDir}  (${run.usage})`,
    "",
  ].join("\n");
}
