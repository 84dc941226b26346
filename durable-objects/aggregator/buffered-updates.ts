// A round's updates kept one by one for a rule that needs every update (a robust rule, src/fl/robust/, or a
// method's own, ServerMethod.aggregation): each under
// its own key, a fixed header (the client and its weight) then its float32 values in 1 MiB rows, so no row
// passes the platform's 2 MB. At the close the rule reads them back in blocks inside its memory budget; the
// geometric median keeps its estimate in rows too. Storage grows by the round's uploads times the adapter's
// size until the close drops them.
import { FlError } from "../../src/fl/errors.ts";
import type { FlatLayout, FlatSource } from "../../src/fl/flat-tensors.ts";
import type { MethodAggregation, MethodReport } from "../../src/fl/methods/method.ts";
import type { Aggregate } from "../../src/fl/robust/aggregate.ts";
import { type RobustReport, robustAggregate } from "../../src/fl/robust/rules.ts";
import type { UpdateSet, VectorStore } from "../../src/fl/robust/update-set.ts";
import type { RobustConfig } from "../../src/protocol/robust.ts";
import { assertWeight } from "../../src/fl/weighted-mean.ts";
import { BlobWriter, CHUNK_BYTES, deleteBlob, readBlobRange, readFloats, type SqlExec } from "../shared/blobs.ts";
import { type Accumulator, copySegments, finiteSegments, SEGMENT } from "./accumulator.ts";

/** Bytes before an update's values: its client and weight as JSON, padded with spaces (a multiple of 4). */
const HEADER_BYTES = 256;

/** What the round's result says of its robust aggregation: the rule's report, clients named, kept small. */
export interface RobustSummary {
  rule: RobustConfig["rule"]["name"];
  updates: number;
  /** Norm bounding: the bound, and the clients whose updates it scaled down (at most NAMED). */
  normBound?: { bound: number; clipped: number; clippedClients: string[] };
  /** Krum, Multi-Krum: the clients whose updates it kept (at most NAMED, the best first). */
  selected?: { count: number; clients: string[] };
  /** The geometric median: its Weiszfeld iterations and the objective at the end. */
  geometricMedian?: { iterations: number; objective: number };
}

/** Clients a summary names at most, so a round's result stays a small row. */
const NAMED = 100;

/** What a round's result says of its rule: a robust rule's summary, or a method's own report. */
export interface RuleResult {
  /** A robust federation's rule and what it did: the clients it clipped or kept. */
  robust?: RobustSummary;
  /** A method's own rule over every update (HetLoRA's weights, FlexLoRA's truncation) and the clients it read, in its order. */
  aggregation?: MethodReport & { clients: string[] };
}

/** What a buffered round computes at its close: the aggregate of the kept updates, and what the round's result says of it. */
export interface BufferedRule {
  aggregate(
    set: UpdateSet,
    estimate: (total: number) => VectorStore,
  ): { aggregate: Aggregate; result(client: (i: number) => string): RuleResult };
}

/** A robust federation's rule (src/fl/robust/), its result the RobustSummary. */
export function robustRule(config: RobustConfig): BufferedRule {
  return {
    aggregate(set, estimate) {
      const { aggregate, report } = robustAggregate(config, set, { estimate });
      return { aggregate, result: (client) => ({ robust: robustSummary(report, set.count, client) }) };
    },
  };
}

/** A method's own rule over every update (ServerMethod.aggregation), given the round's base version; its aggregate kept in rows. */
export function methodRule(rule: MethodAggregation, layout: FlatLayout, global: FlatSource): BufferedRule {
  return {
    aggregate(set, estimate) {
      const out = estimate(set.total);
      const report = rule.aggregate(set, layout, global, out);
      // An SVD's factors may pass float32 though every update was finite: the round fails rather than the version.
      finiteSegments(out, set.total, (at, x) => `${rule.option}: the round's aggregate holds ${x} at element ${at}`);
      // Lists by update, as the clients named: the first NAMED.
      const kept = Object.fromEntries(Object.entries(report).map(([k, x]) => [k, Array.isArray(x) ? x.slice(0, NAMED) : x]));
      const clients = Array.from({ length: Math.min(set.count, NAMED) }, (_, i) => i);
      return { aggregate: out, result: (client) => ({ aggregation: { ...(kept as MethodReport), clients: clients.map(client) } }) };
    },
  };
}

function robustSummary(report: RobustReport, updates: number, client: (i: number) => string): RobustSummary {
  const summary: RobustSummary = { rule: report.rule, updates };
  if (report.normBound) {
    const { bound, norms } = report.normBound;
    const clipped = norms.flatMap((x, i) => (x > bound ? [i] : []));
    summary.normBound = { bound, clipped: clipped.length, clippedClients: clipped.slice(0, NAMED).map(client) };
  }
  if (report.krum) summary.selected = { count: report.krum.selected.length, clients: report.krum.selected.slice(0, NAMED).map(client) };
  if (report.geometricMedian)
    summary.geometricMedian = { iterations: report.geometricMedian.iterations, objective: report.geometricMedian.objective.at(-1)! };
  return summary;
}

export class BufferedUpdates implements Accumulator {
  private readonly sql: SqlExec;
  private readonly prefix: string;
  private readonly layout: FlatLayout;
  private readonly rule: BufferedRule;
  private count: number;
  private computed: ReturnType<BufferedRule["aggregate"]> | null = null;

  /** `count`: the updates already added (from the round's row). */
  constructor(sql: SqlExec, prefix: string, layout: FlatLayout, rule: BufferedRule, count: number) {
    this.sql = sql;
    this.prefix = prefix;
    this.layout = layout;
    this.rule = rule;
    this.count = count;
  }

  private key(i: number): string {
    return `${this.prefix}/${i}`;
  }

  add(update: FlatSource, weight: number, client: string): void {
    assertWeight(weight, `client "${client}"`);
    const header = new TextEncoder().encode(JSON.stringify({ client, weight }).padEnd(HEADER_BYTES));
    if (header.length !== HEADER_BYTES) throw new FlError("weight_invalid", `client "${client}": its header passes ${HEADER_BYTES} bytes`);
    copySegments(this.sql, this.key(this.count), header, this.layout, update);
    this.count++;
  }

  private header(i: number): { client: string; weight: number } {
    return JSON.parse(new TextDecoder().decode(readBlobRange(this.sql, this.key(i), 0, HEADER_BYTES))) as {
      client: string;
      weight: number;
    };
  }

  /** The rule's aggregate, computed at the first call (Krum's distances, the median's iterations) and then read by range. */
  mean(start: number, n: number): Float32Array {
    if (!this.computed) {
      const weights = Array.from({ length: this.count }, (_, i) => this.header(i).weight);
      const set: UpdateSet = {
        count: this.count,
        total: this.layout.total,
        weight: (i) => weights[i]!,
        read: (i, s, out) => out.set(readFloats(this.sql, this.key(i), HEADER_BYTES / 4 + s, out.length)),
      };
      this.computed = this.rule.aggregate(set, (total) => storedVector(this.sql, `${this.prefix}/estimate`, total));
    }
    const out = new Float32Array(n);
    this.computed.aggregate.read(start, out);
    return out;
  }

  /** What the round's result says of the rule, once `mean` has run. */
  result(): RuleResult {
    if (!this.computed) throw new FlError("state_invalid", "the rule's result is read after the aggregate");
    return this.computed.result((i) => this.header(i).client);
  }

  clear(): void {
    for (let i = 0; i < this.count; i++) deleteBlob(this.sql, this.key(i));
    deleteBlob(this.sql, `${this.prefix}/estimate`);
  }
}

/** A float32 vector of `total` zeros under `key`, written a range at a time: each range's rows read, patched and replaced. */
function storedVector(sql: SqlExec, key: string, total: number): VectorStore {
  const zeros = new BlobWriter(sql, key);
  for (let start = 0; start < total; start += SEGMENT) zeros.write(new Uint8Array(4 * Math.min(SEGMENT, total - start)));
  zeros.end();
  return {
    total,
    read: (start, out) => out.set(readFloats(sql, key, start, out.length)),
    write(start, values) {
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      const from = 4 * start;
      for (let chunk = Math.floor(from / CHUNK_BYTES); chunk * CHUNK_BYTES < from + bytes.length; chunk++) {
        const base = chunk * CHUNK_BYTES;
        const row = new Uint8Array(readBlobRange(sql, key, base, Math.min(CHUNK_BYTES, 4 * total - base)));
        const lo = Math.max(from, base);
        const hi = Math.min(from + bytes.length, base + row.length);
        row.set(bytes.subarray(lo - from, hi - from), lo - base);
        sql.exec("UPDATE blobs SET data = ? WHERE key = ? AND chunk = ?", row, key, chunk);
      }
    },
  };
}
