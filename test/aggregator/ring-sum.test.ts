// The aggregator's sum of SecAgg+ masked inputs (durable-objects/aggregator/ring-sum.ts) over SQLite:
// exact in Z_2^32 across row boundaries, every stored row within the platform's 2 MB value limit, and a
// mask removed in pieces leaving the sum of the others.
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { nodeSql } from "../../bench/lib/node-sql.ts";
import { RING_SEGMENT, RingSum } from "../../durable-objects/aggregator/ring-sum.ts";
import { seededUniform } from "../../src/engine/sampling.ts";

describe("the ring sum of masked inputs", () => {
  it("transforms into another sum row by row, in slices that resume from the first row not written", async () => {
    const db = new DatabaseSync(":memory:");
    const sql = nodeSql(db);
    sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
    const length = 2 * RING_SEGMENT + 5;
    const u = seededUniform(4);
    const [x, mask] = [0, 1].map(() => Uint32Array.from({ length }, () => Math.floor(u() * 2 ** 32)));
    const masked = new RingSum(sql, "masked", length);
    masked.add((start, out) => out.set(x!.subarray(start, start + out.length).map((v, k) => v + mask![start + k]!)), true);
    const unmasked = new RingSum(sql, "unmasked", length);
    const applied: number[] = [];
    const remove = async (start: number, row: Uint32Array) => {
      applied.push(start);
      for (let k = 0; k < row.length; k++) row[k] = row[k]! - mask![start + k]!;
    };
    // A first slice of one row; a round that closes while a row is computed writes nothing of it; the next
    // slice goes on from the second row.
    expect(await masked.transformInto(unmasked, remove, () => true, 1)).toBe(false);
    expect(applied).toEqual([0]);
    let checks = 0;
    expect(await masked.transformInto(unmasked, remove, () => checks++ < 1, 5)).toBe(false);
    expect(applied).toEqual([0, RING_SEGMENT]);
    expect(await masked.transformInto(unmasked, remove, () => true, 5)).toBe(true);
    expect(applied).toEqual([0, RING_SEGMENT, RING_SEGMENT, 2 * RING_SEGMENT]);
    expect(unmasked.read(0, length)).toEqual(x);
    // A finished transform has nothing left to do.
    expect(await masked.transformInto(unmasked, remove, () => true, 5)).toBe(true);
    expect(applied).toHaveLength(4);
  });

  it("adds in Z_2^32 across rows, keeps rows of at most 1 MiB, and removes a vector segment by segment", () => {
    const db = new DatabaseSync(":memory:");
    const sql = nodeSql(db);
    sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
    const length = 2 * RING_SEGMENT + 5;
    const u = seededUniform(9);
    const inputs = [0, 1, 2].map(() => Uint32Array.from({ length }, () => Math.floor(u() * 2 ** 32)));
    const ring = new RingSum(sql, "sum", length);
    inputs.forEach((x, i) => ring.add((start, out) => out.set(x.subarray(start, start + out.length)), i === 0));
    const want = new Uint32Array(length);
    for (const x of inputs) for (let k = 0; k < length; k++) want[k] = want[k]! + x[k]!;
    expect(ring.read(0, length)).toEqual(want);
    const rows = db.prepare("SELECT chunk, length(data) AS bytes FROM blobs WHERE key = 'sum' ORDER BY chunk").all() as { bytes: number }[];
    expect(rows.map((r) => r.bytes)).toEqual([4 * RING_SEGMENT, 4 * RING_SEGMENT, 20]);
    // Remove input 1 in two pieces, the first across a row boundary.
    const cut = RING_SEGMENT + 7;
    ring.addAt(100, inputs[1]!.subarray(100, cut), -1);
    ring.addAt(cut, inputs[1]!.subarray(cut), -1);
    ring.addAt(0, inputs[1]!.subarray(0, 100), -1);
    const rest = new Uint32Array(length);
    for (const x of [inputs[0]!, inputs[2]!]) for (let k = 0; k < length; k++) rest[k] = rest[k]! + x[k]!;
    expect(ring.read(0, length)).toEqual(rest);
    expect(ring.read(RING_SEGMENT - 2, 4)).toEqual(rest.subarray(RING_SEGMENT - 2, RING_SEGMENT + 2));
    ring.clear();
    expect(db.prepare("SELECT COUNT(*) AS n FROM blobs").get()).toEqual({ n: 0 });
  });
});
