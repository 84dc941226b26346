// A client's store of a federation: keyed by the federation's id and creation, so a federation re-created
// under a deleted one's id starts from nothing of the old one's, and the old one's state is dropped.
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { nodeSql } from "../../bench/lib/node-sql.ts";
import { CHUNK_BYTES } from "../../durable-objects/shared/blobs.ts";
import { federationStore } from "../../workers/client/federation-store.ts";

const sqlWithBlobs = () => {
  const sql = nodeSql(new DatabaseSync(":memory:"));
  sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
  return sql;
};
const rows = (sql: ReturnType<typeof sqlWithBlobs>) => sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM blobs").one().n;

describe("a client's federation store", () => {
  it("keeps a federation's values for it alone, and a re-created federation of that id starts empty", () => {
    const sql = sqlWithBlobs();
    const first = federationStore(sql, "fed", 1000);
    // Over one chunk: every row of it belongs to the value.
    const model = Uint8Array.from({ length: CHUNK_BYTES + 5 }, (_, i) => i % 251);
    first.put("fedkseed-model", model);
    first.put("topk-residual", Uint8Array.of(1, 2, 3));
    expect(first.get("fedkseed-model")).toEqual(model);
    expect(rows(sql)).toBe(3);

    // Other federations, one whose id starts with this one's: untouched by what follows.
    const other = federationStore(sql, "fed2", 1000);
    other.put("fedkseed-model", Uint8Array.of(9));

    // The id deleted and created again (a later creation time): nothing of the first is read...
    const again = federationStore(sql, "fed", 10000);
    expect(again.get("fedkseed-model")).toBeNull();
    expect(again.get("topk-residual")).toBeNull();
    // ...and its first write drops all of the first's rows, not the other federation's.
    again.put("topk-residual", Uint8Array.of(7));
    expect(first.get("fedkseed-model")).toBeNull();
    expect(again.get("topk-residual")).toEqual(Uint8Array.of(7));
    expect(other.get("fedkseed-model")).toEqual(Uint8Array.of(9));
    expect(rows(sql)).toBe(2);

    // A write of the same federation replaces its own value and keeps its others.
    again.put("fedkseed-model", Uint8Array.of(4, 4));
    again.put("topk-residual", Uint8Array.of(8));
    expect([again.get("fedkseed-model"), again.get("topk-residual")]).toEqual([Uint8Array.of(4, 4), Uint8Array.of(8)]);
    expect(rows(sql)).toBe(3);

    // A stale job of the first federation writing late keeps its own value and wipes nothing of the later one's.
    first.put("topk-residual", Uint8Array.of(1));
    expect([again.get("fedkseed-model"), again.get("topk-residual")]).toEqual([Uint8Array.of(4, 4), Uint8Array.of(8)]);
    expect(rows(sql)).toBe(4);
    // The later federation's next write drops it.
    again.put("topk-residual", Uint8Array.of(9));
    expect(first.get("topk-residual")).toBeNull();
    expect(rows(sql)).toBe(3);
  });
});
