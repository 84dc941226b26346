// Where a robust rule let attackers through (bench/lib/robust-counts.ts): the kept and clipped updates of a
// run's rounds split into the attackers' and the honest clients', added over seeds, and shown as a cell.
import { describe, expect, it } from "vitest";
import { parseRunConfig } from "../../cli/run-config.ts";
import type { RoundRecord } from "../../cli/run/report.ts";
import { ruleCell, ruleCounts, sumRuleCounts } from "../../bench/lib/robust-counts.ts";

const config = (extra: Record<string, unknown> = {}) =>
  parseRunConfig({ clients: 5, attack: { attackers: 2, poison: { type: "sign-flip", scale: 1 } }, ...extra }, "t");
const round = (n: number, robust?: RoundRecord["robust"]): RoundRecord => ({
  round: n,
  status: "closed",
  version: n,
  uploads: 5,
  train_loss: 1,
  validation_loss: 1,
  seconds: 1,
  ...(robust ? { robust } : {}),
});

describe("rule counts", () => {
  it("splits Krum's kept clients into the last clients (the attackers) and the rest, over rounds", () => {
    const rounds = [
      round(0),
      round(1, { rule: "multi-krum", updates: 5, selected: { count: 3, clients: ["c1", "c5", "c2"] } }),
      round(2, { rule: "multi-krum", updates: 5, selected: { count: 3, clients: ["c4", "c5", "c3"] } }),
    ];
    const counts = ruleCounts(config(), rounds);
    expect(counts).toEqual({ rounds: 2, updates: { attackers: 4, honest: 6 }, kept: { attackers: 3, honest: 3 } });
    expect(ruleCell(counts!)).toBe("kept A 3/4, H 3/6");
  });

  it("counts the norm bound's clipped clients, and adds seeds up", () => {
    const clipped = (clients: string[]) => ({
      rule: "mean" as const,
      updates: 5,
      normBound: { bound: 1, clipped: clients.length, clippedClients: clients },
    });
    const a = ruleCounts(config(), [round(1, clipped(["c4", "c1"])), round(2, clipped([]))])!;
    const b = ruleCounts(config(), [round(1, clipped(["c2", "c3", "c5"]))])!;
    expect(a).toEqual({ rounds: 2, updates: { attackers: 4, honest: 6 }, clipped: { attackers: 1, honest: 1 } });
    const both = sumRuleCounts([a, b]);
    expect(both).toEqual({ rounds: 3, updates: { attackers: 6, honest: 9 }, clipped: { attackers: 2, honest: 3 } });
    expect(ruleCell(both)).toBe("clipped A 2/6, H 3/9");
  });

  it("has no split of the updates seen where a round samples some clients, and nothing without a rule", () => {
    const some = ruleCounts(config({ clientsPerRound: 3 }), [round(1, { rule: "median", updates: 3 })]);
    expect(some).toEqual({ rounds: 1, updates: null });
    expect(ruleCell(some!)).toBe("-");
    expect(ruleCounts(config(), [round(0), round(1)])).toBeNull();
  });
});
