// Where a robust rule let an attack through (issue 19): over a run's rounds, how many of the attackers' and
// of the honest clients' updates its rule kept (Krum, Multi-Krum) or scaled down (norm bounding), from the
// rule's summary each round's record carries (cli/run/report.ts).
import type { RoundRecord } from "../../cli/run/report.ts";
import type { RunConfig } from "../../cli/run-config.ts";
import { attacker, clientId } from "../../cli/run-data.ts";

/** Counts over a run's closed rounds, the kept or clipped ones split by whether the client attacked. */
export interface RuleCounts {
  /** Rounds whose rule reported. */
  rounds: number;
  /** The updates the rule saw over them, attackers' and honest; null where a round samples some of the clients. */
  updates: Split | null;
  /** Krum, Multi-Krum: the updates it kept. */
  kept?: Split;
  /** Norm bounding: the updates it scaled down to its bound. */
  clipped?: Split;
}

/** The counts of a run of `config` from its round records; null where no round carries a rule's summary. */
export function ruleCounts(config: RunConfig, rounds: readonly RoundRecord[]): RuleCounts | null {
  const summaries = rounds.flatMap((r) => (r.robust ? [r.robust] : []));
  if (summaries.length === 0) return null;
  const attackers = new Set(
    Array.from({ length: config.clients }, (_, i) => i)
      .filter((i) => attacker(config, i))
      .map(clientId),
  );
  const split = (named: readonly string[][]) => {
    const all = named.flat();
    const bad = all.filter((c) => attackers.has(c)).length;
    return { attackers: bad, honest: all.length - bad };
  };
  const everyone = (config.clientsPerRound ?? config.clients) === config.clients;
  const total = summaries.reduce((a, s) => a + s.updates, 0);
  return {
    rounds: summaries.length,
    updates: everyone ? { attackers: attackers.size * summaries.length, honest: total - attackers.size * summaries.length } : null,
    ...(summaries.some((s) => s.selected) ? { kept: split(summaries.map((s) => s.selected?.clients ?? [])) } : {}),
    ...(summaries.some((s) => s.normBound) ? { clipped: split(summaries.map((s) => s.normBound?.clippedClients ?? [])) } : {}),
  };
}

type Split = { attackers: number; honest: number };

/** Counts of several runs (a row's seeds) added up; a split only where every run has it. */
export function sumRuleCounts(counts: readonly RuleCounts[]): RuleCounts {
  const add = (pick: (c: RuleCounts) => Split | null | undefined): Split | null => {
    const xs = counts.map(pick);
    if (xs.some((x) => !x)) return null;
    return { attackers: xs.reduce((a, x) => a + x!.attackers, 0), honest: xs.reduce((a, x) => a + x!.honest, 0) };
  };
  const kept = add((c) => c.kept);
  const clipped = add((c) => c.clipped);
  return {
    rounds: counts.reduce((a, c) => a + c.rounds, 0),
    updates: add((c) => c.updates),
    ...(kept ? { kept } : {}),
    ...(clipped ? { clipped } : {}),
  };
}

/** "kept A 2/20, H 71/80": what the rule did to the attackers' (A) and the honest (H) updates, of those it saw. */
export function ruleCell(c: RuleCounts): string {
  const done = c.kept ? { what: "kept", n: c.kept } : c.clipped ? { what: "clipped", n: c.clipped } : null;
  if (!done) return "-";
  const of = (k: keyof Split) => (c.updates ? `/${c.updates[k]}` : "");
  return `${done.what} A ${done.n.attackers}${of("attackers")}, H ${done.n.honest}${of("honest")}`;
}
