// Where a round's accepted updates go until it closes (the Accumulator), today a running weighted sum,
// and the close that turns the mean into the next version, computed a segment (one storage chunk) at a
// time: an aggregator holds the upload it is folding and a few segments, never several copies of the
// adapter, so an adapter up to what one RPC call carries fits a 128 MB isolate (bench/aggregator measures
// it). Call inside transactionSync: a throw at any segment rolls back every segment written before it.
import { pieces, type FlatLayout, type FlatSource } from "../../src/fl/flat-tensors.ts";
import { FlError } from "../../src/fl/errors.ts";
import { addFold, checkFold } from "../../src/fl/weighted-mean.ts";
import { slotKey } from "../../src/fl/server-state.ts";
import type { Strategy } from "../../src/fl/strategy.ts";
import { BlobWriter, CHUNK_BYTES, deleteBlob, readBlobRange, readFloats, type SqlExec } from "../shared/blobs.ts";

/** Elements a segment holds: one storage chunk of float32, so a segment of the sum is one row. */
export const SEGMENT = CHUNK_BYTES / 4;

const bytesOf = (t: Float32Array) => new Uint8Array(t.buffer, t.byteOffset, t.byteLength);

function where(layout: FlatLayout, flat: number): string {
  const t = layout.tensors.find((x) => flat >= x.start && flat < x.start + x.length);
  return t ? `tensor "${t.name}" at index ${flat - t.start}` : `element ${flat}`;
}

/**
 * Adds weight · update into the flat sum stored under `key` (created when `first`). A non-finite update
 * value or a sum that would overflow float32 throws FlError `non_finite` naming the tensor and index.
 */
export function foldSegments(sql: SqlExec, key: string, layout: FlatLayout, update: FlatSource, weight: number, first: boolean): void {
  const delta = new Float32Array(SEGMENT);
  for (let start = 0, chunk = 0; start < layout.total; start += SEGMENT, chunk++) {
    const n = Math.min(SEGMENT, layout.total - start);
    const d = delta.subarray(0, n);
    update.read(start, d);
    const sum = first ? new Float32Array(n) : readFloats(sql, key, start, n);
    checkFold(sum, d, weight, (i) => where(layout, start + i));
    addFold(sum, d, weight);
    sql.exec(
      "INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?) ON CONFLICT (key, chunk) DO UPDATE SET data = excluded.data",
      key,
      chunk,
      bytesOf(sum),
    );
  }
}

/**
 * Writes `header` then the flat source's values as float32 under `key`, refusing (FlError `non_finite`,
 * naming the tensor and index) a value that is not finite.
 */
export function copySegments(sql: SqlExec, key: string, header: Uint8Array, layout: FlatLayout, source: FlatSource): void {
  const out = new BlobWriter(sql, key);
  out.write(header);
  finiteSegments(
    source,
    layout.total,
    (at, x) => `${where(layout, at)} holds ${x}`,
    (v) => out.write(bytesOf(v)),
  );
  out.end();
}

/**
 * Reads `total` values of `source` a segment at a time, refusing (FlError `non_finite`, with `message` of the
 * element and its value) the first that is not finite, and hands each segment to `each` (reused: copy to keep).
 */
export function finiteSegments(
  source: Pick<FlatSource, "read">,
  total: number,
  message: (at: number, value: number) => string,
  each?: (values: Float32Array) => void,
): void {
  const values = new Float32Array(SEGMENT);
  for (let start = 0; start < total; start += SEGMENT) {
    const v = values.subarray(0, Math.min(SEGMENT, total - start));
    source.read(start, v);
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new FlError("non_finite", message(start + bad, v[bad]!));
    each?.(v);
  }
}

/**
 * A round's accepted updates until it closes. The streaming weighted sum below keeps one running sum;
 * a secure-aggregation modular sum or a robust rule's buffered store keeps something else behind the
 * same three calls.
 */
export interface Accumulator {
  /** Adds one client's update with its weight; called inside the upload's transaction. */
  add(update: FlatSource, weight: number, client: string): void;
  /** The weighted mean of what was added, elements [start, start + n): what the strategy closes over. */
  mean(start: number, n: number): Float32Array;
  /** Drops what was added (the round closed or failed). */
  clear(): void;
}

/** The example-weighted running sum (FedAvg's numerator, McMahan et al. 2017), one stored row per segment. */
export class StreamingSum implements Accumulator {
  private readonly sql: SqlExec;
  private readonly key: string;
  private readonly layout: FlatLayout;
  private count: number;
  private readonly totalWeight: number;

  /** `so far`: the updates and their total weight already added (from the round's row). */
  constructor(sql: SqlExec, key: string, layout: FlatLayout, soFar: { count: number; totalWeight: number }) {
    this.sql = sql;
    this.key = key;
    this.layout = layout;
    this.count = soFar.count;
    this.totalWeight = soFar.totalWeight;
  }

  add(update: FlatSource, weight: number): void {
    foldSegments(this.sql, this.key, this.layout, update, weight, this.count === 0);
    this.count++;
  }

  mean(start: number, n: number): Float32Array {
    return readFloats(this.sql, this.key, start, n).map((x) => x / this.totalWeight);
  }

  clear(): void {
    deleteBlob(this.sql, this.key);
  }
}

export interface CloseInput {
  layout: FlatLayout;
  /** The global version's key, and where its data starts (its header is copied to the next version). */
  globalKey: string;
  dataStart: number;
  /** The round's mean update, a segment at a time. */
  mean: (start: number, n: number) => Float32Array;
  strategy: Strategy;
  /** The server state: its round and the slots it holds, each a flat vector under stateKey(slot). */
  round: number;
  slots: readonly string[];
  stateKey: (slot: string) => string;
  nextKey: string;
  /** Where the next state's slots go (written then swapped in by the caller). */
  nextStateKey: (slot: string) => string;
}

/**
 * Writes the next version, global + the strategy applied to sum / totalWeight, and the strategy's next
 * slots, segment by segment; returns the slots' names. Strategies are elementwise (Reddi et al. 2021;
 * Hsu et al. 2019), so applying one to each tensor's segment gives what it gives on whole tensors.
 */
export function closeSegments(sql: SqlExec, c: CloseInput): string[] {
  const next = new BlobWriter(sql, c.nextKey);
  next.write(readBlobRange(sql, c.globalKey, 0, c.dataStart));
  const writers = new Map<string, BlobWriter>();
  for (let start = 0; start < c.layout.total; start += SEGMENT) {
    const n = Math.min(SEGMENT, c.layout.total - start);
    const mean = c.mean(start, n);
    const global = new Float32Array(readBlobRange(sql, c.globalKey, c.dataStart + start * 4, n * 4).buffer);
    const previous = new Map(c.slots.map((slot) => [slot, readFloats(sql, c.stateKey(slot), start, n)]));
    const out = new Float32Array(n);
    const outSlots = new Map<string, Float32Array>();
    for (const { tensor, into, count } of pieces(c.layout, start, n)) {
      const cut = (t: Float32Array) => t.subarray(into, into + count);
      const state = { round: c.round, slots: new Map([...previous].map(([slot, t]) => [slotKey(slot, tensor.name), cut(t)])) };
      const r = c.strategy.aggregateTrain(new Map([[tensor.name, cut(global)]]), new Map([[tensor.name, cut(mean)]]), state);
      out.set(r.global.get(tensor.name)!, into);
      for (const [key, t] of r.state.slots) {
        const slot = key.slice(0, -(tensor.name.length + 1));
        if (!outSlots.has(slot)) outSlots.set(slot, new Float32Array(n));
        outSlots.get(slot)!.set(t, into);
      }
    }
    next.write(bytesOf(out));
    for (const [slot, t] of outSlots) {
      if (!writers.has(slot)) writers.set(slot, new BlobWriter(sql, c.nextStateKey(slot)));
      writers.get(slot)!.write(bytesOf(t));
    }
  }
  next.end();
  for (const w of writers.values()) w.end();
  return [...writers.keys()];
}
