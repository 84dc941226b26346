// The robustness report's README table (bench/lib/quality-table.ts robustMatrix): an attack per line, a
// defence per column, one table per share of attackers, from rows named as bench/lib/robust-rows.ts names them.
import { describe, expect, it } from "vitest";
import { type QualitySummary, robustMatrix } from "../../bench/lib/quality-table.ts";

const row = (name: string, mean: number, seeds = 1, std = 0): QualitySummary => ({
  task: "spam",
  partition: "iid",
  row: name,
  label: name,
  metric: "accuracy",
  mean,
  std,
  balancedMean: null,
  intervalHalfWidth: null,
  clientStd: null,
  roundsTo95: null,
  seeds: Array.from({ length: seeds }),
});

describe("the robustness matrix", () => {
  it("puts each attack on a line and each defence in a column, per share of attackers, '-' where a row has not run", () => {
    // Attacks keep the preset's order (sign flip before scaling) whatever order the rows ran in.
    const tables = robustMatrix([
      row("scale.none.10", 0.5),
      row("clean.none", 0.8),
      row("clean.median", 0.79),
      row("sign-flip.none.20", 0.32, 3, 0.01),
      row("sign-flip.median.20", 0.785),
    ]);
    expect(tables).toHaveLength(2);
    expect(tables[0]!.split("\n")).toEqual([
      "10% attackers  none  median",
      "-------------  ----  ------",
      "no attacker    80.0    79.0",
      "sign-flip         -       -",
      "scale          50.0       -",
    ]);
    expect(tables[1]!.split("\n").slice(2)).toEqual([
      "no attacker          80.0    79.0",
      "sign-flip      32.0 ± 1.0    78.5",
      "scale                   -       -",
    ]);
  });
});
