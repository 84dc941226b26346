// A robust round's buffered updates (durable-objects/aggregator/buffered-updates.ts) over SQLite, with an
// adapter larger than one storage row: each update kept across rows of at most 1 MiB, the rule's aggregate
// read back by segments equal to the same rule in memory, the geometric median's stored estimate patched
// across a row boundary, and nothing left after clear; a method's own rule (ServerMethod.aggregation) through
// the same rows.
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { nodeSql } from "../../bench/lib/node-sql.ts";
import { SEGMENT } from "../../durable-objects/aggregator/accumulator.ts";
import { BufferedUpdates, methodRule, robustRule } from "../../durable-objects/aggregator/buffered-updates.ts";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { arraySource } from "../../src/fl/flat-tensors.ts";
import { robustAggregate } from "../../src/fl/robust/rules.ts";
import { arrayUpdateSet } from "../../src/fl/robust/update-set.ts";
import type { RobustConfig } from "../../src/protocol/robust.ts";

const TOTAL = SEGMENT + 1000;
const layout = { tensors: [{ name: "w", shape: [TOTAL], start: 0, length: TOTAL }], total: TOTAL };

describe("a robust round's buffered updates", () => {
  for (const config of [
    { rule: { name: "geometric-median", maxIterations: 3 }, normBound: { bound: "median" } },
    { rule: { name: "multi-krum", byzantine: 1 }, weights: "uniform" },
  ] as RobustConfig[])
    it(`${config.rule.name}: the stored rule equals the rule in memory, rows stay within 1 MiB, clear drops them all`, () => {
      const sql = nodeSql(new DatabaseSync(":memory:"));
      sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
      const u = seededUniform(9);
      const updates = Array.from({ length: 5 }, (_, i) => normalSamples(u, TOTAL, 0.01 * (i + 1)));
      const weights = [5, 4, 3, 2, 1];
      // Added in two sittings, as two uploads' transactions would: the second accumulator resumes at the count.
      new BufferedUpdates(sql, "updates/f/1", layout, robustRule(config), 0).add(arraySource(updates[0]!), weights[0]!, "c0");
      const buffered = new BufferedUpdates(sql, "updates/f/1", layout, robustRule(config), 1);
      for (let i = 1; i < 5; i++) buffered.add(arraySource(updates[i]!), weights[i]!, `c${i}`);
      const got = new Float32Array(TOTAL);
      for (let s = 0; s < TOTAL; s += SEGMENT) got.set(buffered.mean(s, Math.min(SEGMENT, TOTAL - s)), s);
      const want = new Float32Array(TOTAL);
      robustAggregate(config, arrayUpdateSet(updates, weights)).aggregate.read(0, want);
      expect(got).toEqual(want);
      const widest = sql.exec<{ n: number }>("SELECT max(length(data)) AS n FROM blobs").one().n;
      expect(widest).toBe(1 << 20);
      // Two rows per update (a header and 1 MiB + 4,000 bytes of values), two for the geometric median's estimate.
      expect(sql.exec<{ n: number }>("SELECT count(*) AS n FROM blobs").one().n).toBe(config.rule.name === "geometric-median" ? 12 : 10);
      expect(buffered.result().robust).toMatchObject({ rule: config.rule.name, updates: 5 });
      buffered.clear();
      expect(sql.exec<{ n: number }>("SELECT count(*) AS n FROM blobs").one().n).toBe(0);
    });

  it("a method's rule: its aggregate kept in rows and read back, its lists cut to the clients named; non-finite refused", () => {
    const sql = nodeSql(new DatabaseSync(":memory:"));
    sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
    const global = { total: TOTAL, read: (_s: number, out: Float32Array) => out.fill(0.5) };
    // A rule of its own: twice update 0, plus the global; with `poison`, one value past float32.
    const rule = (poison: boolean) =>
      methodRule(
        {
          option: "a test rule",
          peakBytes: () => 0,
          work: () => 0,
          aggregate(set, _layout, g, out) {
            const u = new Float32Array(TOTAL);
            const base = new Float32Array(TOTAL);
            set.read(0, 0, u);
            g.read(0, base);
            out.write(
              0,
              u.map((x, i) => 2 * x + base[i]! + (poison && i === TOTAL - 1 ? Infinity : 0)),
            );
            return { rule: "test", weights: Array.from({ length: 150 }, (_, i) => i) };
          },
        },
        layout,
        global,
      );
    const updates = Array.from({ length: 2 }, (_, i) => normalSamples(seededUniform(i), TOTAL, 0.1));
    for (const poison of [false, true]) {
      const buffered = new BufferedUpdates(sql, `updates/m${poison}/1`, layout, rule(poison), 0);
      updates.forEach((x, i) => buffered.add(arraySource(x), 1, `c${i}`));
      if (poison) {
        expect(() => buffered.mean(0, 10)).toThrow(`a test rule: the round's aggregate holds Infinity at element ${TOTAL - 1}`);
        continue;
      }
      const got = new Float32Array(TOTAL);
      for (let s = 0; s < TOTAL; s += SEGMENT) got.set(buffered.mean(s, Math.min(SEGMENT, TOTAL - s)), s);
      expect(got).toEqual(updates[0]!.map((x) => 2 * x + 0.5));
      const { aggregation } = buffered.result();
      expect(aggregation!.clients).toEqual(["c0", "c1"]);
      expect((aggregation!.weights as number[]).length).toBe(100);
      buffered.clear();
    }
  });
});
