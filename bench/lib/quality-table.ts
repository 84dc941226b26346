// One task x partition of the learning-quality report as a text table: bench/quality.ts prints it and
// bench/quality-readme.ts writes it into the README, from the same summary rows.
import { fmt, formatTable } from "../../src/report/table.ts";

/** A row of bench/results/quality.json: a row's test score over seeds and what goes with it. */
export interface QualitySummary {
  task: string;
  partition: string;
  row: string;
  label: string;
  metric: "accuracy" | "loss";
  mean: number;
  std: number;
  balancedMean: number | null;
  /** The mean over seeds of each run's 95% Wilson half-width (test set sampling alone). */
  intervalHalfWidth: number | null;
  clientStd: number | null;
  roundsTo95: number | null;
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
    ]),
  );
}
