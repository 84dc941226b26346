// What the robust rules cost the aggregator (issue 19): a round of n updates of an adapter of S MB kept in
// storage rows (durable-objects/aggregator/buffered-updates.ts) and the rule applied at the close a block at
// a time, against the streaming mean (FedAvg's running sum) on the same updates. The aggregator's own code
// on node:sqlite (bench/lib/node-sql.ts) in this Node process, as bench/aggregator.ts's memory part runs it:
// per rule, the milliseconds to add one update, to compute and read back the aggregate at the close, the
// bytes stored at the close, and, in a second round of its own, the rule's live memory: this process's JS
// heap and buffers over what it held before the close, sampled after a collection every 16 SQL statements
// (garbage not yet collected would count otherwise; the updates themselves are in SQLite).
// Run: node --expose-gc bench/robust-cost.ts [--clients 10,50,100] [--mb 1,8]
import { DatabaseSync } from "node:sqlite";
import { benchArgs } from "./lib/args.ts";
import { type Accumulator, SEGMENT, StreamingSum } from "../durable-objects/aggregator/accumulator.ts";
import { BufferedUpdates, robustRule } from "../durable-objects/aggregator/buffered-updates.ts";
import { normalSamples } from "../src/engine/llama/init.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { arraySource, type FlatLayout } from "../src/fl/flat-tensors.ts";
import type { RobustConfig } from "../src/protocol/robust.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { nodeSql } from "./lib/node-sql.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({ options: { clients: { type: "string", default: "10,50,100" }, mb: { type: "string", default: "1,8" } } });
const log = (s: string) => process.stderr.write(`${s}\n`);
const MiB = 2 ** 20;

const RULES: Record<string, RobustConfig | null> = {
  "mean (streaming, FedAvg)": null,
  "norm bound + mean": { rule: { name: "mean" }, normBound: { bound: "median" } },
  median: { rule: { name: "median" } },
  "trimmed mean 0.2": { rule: { name: "trimmed-mean", trim: 0.2 } },
  "krum (f = n/5)": { rule: { name: "krum", byzantine: 0 } },
  "multi-krum (f = n/5)": { rule: { name: "multi-krum", byzantine: 0 } },
  "bulyan (f = ⌊(n − 3)/4⌋)": { rule: { name: "bulyan", byzantine: 0 } },
  "geometric median": { rule: { name: "geometric-median" } },
};

if (!globalThis.gc) throw new Error("run with node --expose-gc: the live memory is sampled after a collection");
const gc = globalThis.gc;
const memory = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

interface Row {
  rule: string;
  clients: number;
  adapterMB: number;
  addMs: number;
  closeMs: number;
  storedMB: number;
  liveMiB: number;
}

/**
 * One round of `n` updates under `robust` (null: the streaming mean): its add and close times, stored bytes
 * and (when `sample`) live memory.
 */
function round(robust: RobustConfig | null, n: number, values: Float32Array, sample: boolean) {
  const total = values.length;
  const layout: FlatLayout = { tensors: [{ name: "w", shape: [total], start: 0, length: total }], total };
  const db = new DatabaseSync(":memory:");
  let peak = 0;
  let statements = 0;
  // Sampling after a collection slows the close, so the timed round does not sample.
  const sql = nodeSql(db, () => {
    if (!sample || ++statements % 16) return;
    gc();
    peak = Math.max(peak, memory());
  });
  sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
  const accumulator = (count: number): Accumulator =>
    robust
      ? new BufferedUpdates(sql, "updates/b/1", layout, robustRule(robust), count)
      : new StreamingSum(sql, "sum/b/1", layout, { count, totalWeight: (n * (n + 1)) / 2 });
  const scaled = new Float32Array(total);
  const adds: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = 1 + (i % 7) / 7;
    for (let k = 0; k < total; k++) scaled[k] = s * values[k]!;
    const t0 = performance.now();
    accumulator(i).add(arraySource(scaled), i + 1, `c${i}`);
    adds.push(performance.now() - t0);
  }
  const storedMB = (db.prepare("SELECT sum(length(data)) AS n FROM blobs").get() as { n: number }).n / 1e6;
  gc();
  const before = memory();
  peak = before;
  const closing = accumulator(n);
  const t0 = performance.now();
  for (let start = 0; start < total; start += SEGMENT) closing.mean(start, Math.min(SEGMENT, total - start));
  const closeMs = performance.now() - t0;
  peak = Math.max(peak, memory());
  closing.clear();
  db.close();
  adds.sort((a, b) => a - b);
  return { addMs: adds[adds.length >> 1]!, closeMs, storedMB, liveMiB: (peak - before) / MiB };
}

const rows: Row[] = [];
for (const mb of values.mb.split(",").map(Number))
  for (const n of values.clients.split(",").map(Number)) {
    // One update's values, scaled differently per client, so the bench holds one copy.
    const update = normalSamples(seededUniform(n), Math.round((mb * 1e6) / 4), 0.01);
    for (const [name, config] of Object.entries(RULES)) {
      log(`${mb} MB x ${n}: ${name}`);
      // Krum's f a fifth of the round; Bulyan's the most its 4f + 3 allows.
      const byzantine = config?.rule.name === "bulyan" ? Math.floor((n - 3) / 4) : Math.floor(n / 5);
      const robust: RobustConfig | null =
        config && "byzantine" in config.rule ? { ...config, rule: { ...config.rule, byzantine } } : config;
      const timed = round(robust, n, update, false);
      const sampled = round(robust, n, update, true);
      rows.push({ rule: name, clients: n, adapterMB: mb, ...timed, liveMiB: sampled.liveMiB });
    }
  }

printTable(
  [
    "adapter MB",
    "clients",
    "rule",
    "add ms (median)",
    "close ms",
    "stored MB at the close",
    "live memory MiB (peak over the close's start)",
  ],
  rows.map((r) => [r.adapterMB, r.clients, r.rule, fmt(r.addMs, 1), fmt(r.closeMs, 0), fmt(r.storedMB, 1), fmt(r.liveMiB, 1)]),
);
log(`wrote ${await writeResults("robust-cost", { rows })}`);
