// One task x partition of the learning-quality report as a text table: bench/quality.ts prints it and
// bench/quality-readme.ts writes it into the README, from the same summary rows.
import { fmt, formatTable } from "../../src/report/table.ts";
import { ATTACK_NAMES } from "./robust-rows.ts";

/** A row of bench/results/quality.json: a row's test score over seeds and what goes with it. */
export interface QualitySummary {
  task: string;
  partition: string;
  row: string;
  label: string;
  metric: "accuracy" | "loss";
  mean: number;
  std: number;
  /** The test completion loss, mean over seeds (absent in results written before it was kept). */
  testLoss?: number;
  /** A federated row's last validation loss, mean over seeds; null for baselines. */
  validationLoss?: number | null;
  balancedMean: number | null;
  /** The mean over seeds of each run's 95% Wilson half-width (test set sampling alone). */
  intervalHalfWidth: number | null;
  clientStd: number | null;
  roundsTo95: number | null;
  /** A federated row's bytes a client sent and fetched a round (mean over rounds and seeds); absent or null otherwise. */
  bytes?: { up: number; down: number } | null;
  /** An exact-match task's greedy answers on test: exact match (mean and std over seeds) and the error rate per gold unit. */
  generated?: { exactMatch: number; exactMatchStd: number; errorRate: number } | null;
  /** The row's runs, one per seed. */
  seeds: readonly unknown[];
}

export function qualityTable(rows: readonly QualitySummary[]): string {
  const accuracy = rows[0]?.metric === "accuracy";
  const show = (x: number) => (accuracy ? fmt(100 * x, 1) : fmt(x, 4));
  const pct = (x: number) => fmt(100 * x, 1);
  const generated = rows.some((r) => r.generated);
  const bytes = rows.some((r) => r.bytes);
  return formatTable(
    [
      "row",
      "seeds",
      accuracy ? "accuracy" : "loss",
      "± std",
      ...(accuracy ? ["± 95%", "balanced"] : []),
      ...(generated ? ["exact match %", "± std", "PER %"] : []),
      "client std",
      "rounds to 95%",
      ...(bytes ? ["KiB up / down a client a round"] : []),
    ],
    rows.map((r) => [
      r.label,
      String(r.seeds.length),
      show(r.mean),
      show(r.std),
      ...(accuracy
        ? [r.intervalHalfWidth === null ? "-" : show(r.intervalHalfWidth), r.balancedMean === null ? "-" : show(r.balancedMean)]
        : []),
      ...(generated
        ? r.generated
          ? [pct(r.generated.exactMatch), pct(r.generated.exactMatchStd), pct(r.generated.errorRate)]
          : ["-", "-", "-"]
        : []),
      r.clientStd === null ? "-" : show(r.clientStd),
      r.roundsTo95 === null ? "-" : String(r.roundsTo95),
      ...(bytes ? [r.bytes ? `${fmt(r.bytes.up / 1024, 1)} / ${fmt(r.bytes.down / 1024, 1)}` : "-"] : []),
    ]),
  );
}

/**
 * The robust preset's rows (bench/lib/robust-rows.ts, named attack.defence.percent and clean.defence) as one
 * table per share of attackers: an attack per line, a defence per column, each cell `value` of the row (the
 * test metric's mean, ± its std over seeds when there are several, by default); the clean line is each defence
 * with no attacker. Rows the results do not hold yet show "-"; the tuning rows (tune.*) are not in it.
 */
export function robustMatrix(
  all: readonly QualitySummary[],
  value: (r: QualitySummary) => string = (r) => {
    const show = (x: number) => (r.metric === "accuracy" ? fmt(100 * x, 1) : fmt(x, 4));
    return `${show(r.mean)}${r.seeds.length > 1 ? ` ± ${show(r.std)}` : ""}`;
  },
): string[] {
  const rows = all.filter((r) => !r.row.startsWith("tune."));
  const cell = (r: QualitySummary | undefined) => (r ? value(r) : "-");
  const parts = rows.map((r) => ({ r, name: r.row.split(".") }));
  const defences = [...new Set(parts.map((p) => p.name[1]!))];
  // In the preset's order, whichever share of attackers ran first.
  const attacks = [...new Set(parts.filter((p) => p.name[0] !== "clean").map((p) => p.name[0]!))].sort(
    (a, b) => ATTACK_NAMES.indexOf(a) - ATTACK_NAMES.indexOf(b),
  );
  const percents = [...new Set(parts.filter((p) => p.name.length === 3).map((p) => p.name[2]!))];
  percents.sort((a, b) => Number(a) - Number(b));
  const find = (name: string) => rows.find((r) => r.row === name);
  return percents.map((percent) =>
    formatTable(
      [`${percent}% attackers`, ...defences],
      [
        ["no attacker", ...defences.map((d) => cell(find(`clean.${d}`)))],
        ...attacks.map((a) => [a, ...defences.map((d) => cell(find(`${a}.${d}.${percent}`)))]),
      ],
    ),
  );
}

/** The robust preset's tuning rows (tune.*): each candidate's last validation loss and metric, and its test metric. */
export function tuningTable(all: readonly QualitySummary[]): string | null {
  const rows = all.filter((r) => r.row.startsWith("tune."));
  if (!rows.length) return null;
  const accuracy = rows[0]!.metric === "accuracy";
  const show = (x: number) => (accuracy ? fmt(100 * x, 1) : fmt(x, 4));
  // A task scored by its loss has one validation column: the loss is its metric.
  return formatTable(
    ["row", "seeds", "validation loss", ...(accuracy ? ["validation accuracy %"] : []), `test ${accuracy ? "accuracy %" : "loss"}`],
    rows.map((r) => [
      r.label,
      String(r.seeds.length),
      r.validationLoss == null ? "-" : fmt(r.validationLoss, 4),
      ...(accuracy ? [show(mean((r as QualitySummary & { curves: number[][] }).curves.map((c) => c.at(-1)!)))] : []),
      show(r.mean),
    ]),
  );
}

export const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The sample standard deviation (n − 1); 0 for fewer than two values. */
export const std = (xs: readonly number[]) =>
  xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));

/** The main methods' rows, in the report's order: the gap table leaves out the private, compressed and robust variants. */
export const METHOD_ROWS = [
  "lora-fedavg",
  "lora-fedprox",
  "lora-fedadam",
  "lora-fedyogi",
  "split-lora",
  "offsite",
  "fedkseed",
  "fedbpt",
  "discrete",
  "fedone",
] as const;

/** The baselines a method is measured against, by row name. */
const BASELINES = [
  ["zero-shot", "zero-shot"],
  ["calibrated", "zero-shot-calibrated"],
  ["local-only", "local-only"],
  ["centralized", "centralized"],
] as const;

/**
 * A row's score per seed minus a baseline's: its score at the same seed where the baseline ran that seed,
 * else the baseline's mean (the raw zero-shot is the same at every seed); mean ± std over the row's seeds.
 */
function difference(row: QualitySummary, base: QualitySummary): { mean: number; std: number; n: number } {
  const tests = (r: QualitySummary) => r.seeds as readonly { seed: number; test: number }[];
  const byBase = new Map(tests(base).map((s) => [s.seed, s.test]));
  const d = tests(row).map((s) => s.test - (byBase.get(s.seed) ?? base.mean));
  return { mean: mean(d), std: std(d), n: d.length };
}

/**
 * One task's gaps (a preset's rows of every partition): each method's test score minus each baseline's on the
 * same partition, and minus its own score on IID data (what a non-IID split costs it). Accuracy in points, loss
 * in nats (lower is better: a negative gap is a gain). "-" where either row has not run.
 */
export function gapTable(all: readonly QualitySummary[]): string {
  const accuracy = all[0]?.metric === "accuracy";
  const show = (x: number) => (accuracy ? fmt(100 * x, 1) : fmt(x, 4));
  const cell = (row: QualitySummary, base: QualitySummary | undefined) => {
    if (!base) return "-";
    const d = difference(row, base);
    return `${d.mean >= 0 ? "+" : ""}${show(d.mean)}${d.n > 1 ? ` ± ${show(d.std)}` : ""}`;
  };
  const find = (partition: string, row: string) => all.find((r) => r.partition === partition && r.row === row);
  // IID first: the other partitions are read against it.
  const partitions = [...new Set(all.map((r) => r.partition))].sort((a, b) => Number(b === "iid") - Number(a === "iid"));
  // Only the baselines the task has (a loss task has no calibrated zero-shot).
  const baselines = BASELINES.filter(([, base]) => all.some((r) => r.row === base));
  const lines = partitions.flatMap((partition) =>
    METHOD_ROWS.flatMap((name) => {
      const row = find(partition, name);
      if (!row) return [];
      return [
        [
          partition,
          row.label,
          String(row.seeds.length),
          show(row.mean),
          ...baselines.map(([, base]) => cell(row, find(partition, base))),
          partition === "iid" ? "-" : cell(row, find("iid", name)),
        ],
      ];
    }),
  );
  return formatTable(["partition", "row", "seeds", accuracy ? "accuracy" : "loss", ...baselines.map(([h]) => `vs ${h}`), "vs IID"], lines);
}
