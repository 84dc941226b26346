// The quality report's gap table (bench/lib/quality-table.ts gapTable): each method's score minus each
// baseline's on its partition and minus its own on IID, paired by seed where the baseline ran that seed.
import { describe, expect, it } from "vitest";
import { gapTable, type QualitySummary } from "../../bench/lib/quality-table.ts";

const row = (partition: string, name: string, tests: Record<number, number>): QualitySummary => {
  const values = Object.values(tests);
  return {
    task: "spam",
    partition,
    row: name,
    label: name,
    metric: "accuracy",
    mean: values.reduce((a, b) => a + b, 0) / values.length,
    std: 0,
    balancedMean: null,
    intervalHalfWidth: null,
    clientStd: null,
    roundsTo95: null,
    seeds: Object.entries(tests).map(([seed, test]) => ({ seed: Number(seed), test })),
  };
};

describe("the gap table", () => {
  it("pairs a method's seeds with a baseline's same seeds, else the baseline's mean; IID first; '-' where a row is missing", () => {
    const table = gapTable([
      row("dirichlet-0.1", "lora-fedavg", { 0: 0.6 }),
      row("dirichlet-0.1", "zero-shot", { 0: 0.5 }),
      row("iid", "zero-shot", { 0: 0.5, 1: 0.5, 2: 0.5 }),
      // The calibrated zero-shot is fitted per seed: seed 1 pairs with seed 1.
      row("iid", "zero-shot-calibrated", { 0: 0.8, 1: 0.7, 2: 0.9 }),
      // One seed of local-only: every seed of the method is measured against it.
      row("iid", "local-only", { 0: 0.7 }),
      row("iid", "lora-fedavg", { 0: 0.9, 1: 0.8, 2: 1 }),
      row("iid", "lora-fedavg-dp-eps8", { 0: 0.3 }),
    ]).split("\n");
    expect(table[0]).toMatch(/^partition +row +seeds +accuracy +vs zero-shot +vs calibrated +vs local-only +vs IID$/);
    // Differences to zero-shot: 40, 30, 50 (mean 40, std 10); to calibrated: 10, 10, 10; to local-only: 20, 10, 30.
    expect(table[2]!.split(/ {2,}/)).toEqual(["iid", "lora-fedavg", "3", "90.0", "+40.0 ± 10.0", "+10.0 ± 0.0", "+20.0 ± 10.0", "-"]);
    // Dirichlet 0.1: 60 against its zero-shot 50, no calibrated or local-only row there, 30 below IID's mean of 90.
    expect(table[3]!.split(/ {2,}/)).toEqual(["dirichlet-0.1", "lora-fedavg", "1", "60.0", "+10.0", "-", "-", "-30.0"]);
    // The variants (private, compressed) are not methods of the gap table.
    expect(table).toHaveLength(4);
  });
});
