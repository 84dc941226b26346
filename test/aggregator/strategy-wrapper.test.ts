// The upload pipeline's seam for per-update work: a strategy wrapped as Flower wraps one for
// differential privacy (DifferentialPrivacyServerSideFixedClipping: each update scaled to at most an L2
// norm C before aggregation) sees every update through processUpdate before the accumulator, and the
// close applies the wrapped strategy. Run on the aggregator's own accumulator and close, over SQLite.
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { nodeSql } from "../../bench/lib/node-sql.ts";
import { closeSegments, StreamingSum } from "../../durable-objects/aggregator/accumulator.ts";
import { readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { arraySource, flatLayout, type FlatSource } from "../../src/fl/flat-tensors.ts";
import type { ClientUpdate, Strategy } from "../../src/fl/strategy.ts";
import { encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";

/** Wraps `inner`: every update is scaled to an L2 norm of at most `c`, read a pass over its source. */
function clipped(inner: Strategy, c: number): Strategy {
  return {
    ...inner,
    name: `clipped(${inner.name})`,
    processUpdate(u: ClientUpdate): ClientUpdate {
      const all = new Float32Array(u.source.total);
      u.source.read(0, all);
      const norm = Math.hypot(...all);
      const scale = Math.min(1, c / norm);
      const source: FlatSource = {
        total: u.source.total,
        read: (start, out) => {
          u.source.read(start, out);
          for (let i = 0; i < out.length; i++) out[i]! *= scale;
        },
      };
      return { ...u, source };
    },
  };
}

describe("a strategy wrapped with a per-update hook", () => {
  it("clips each update before the sum: the next version is global + the weighted mean of the clipped updates", () => {
    const sql = nodeSql(new DatabaseSync(":memory:"));
    sql.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
    const global = new Map([
      ["a", Float32Array.of(1, 2, 3)],
      ["b", Float32Array.of(-1, 0)],
    ]);
    const file = encodeTensorFile(
      global,
      new Map([
        ["a", [3]],
        ["b", [2]],
      ]),
    );
    writeBlob(sql, "v0", file);
    const header = readSafetensorsHeader(file);
    const layout = flatLayout(header);
    // Flat in layout order (a then b): u1 has norm 10 and is clipped to 2; u2 has norm 1 and passes.
    const updates = [
      { values: [6, 0, 0, 8, 0], weight: 1 },
      { values: [0, 0, 1, 0, 0], weight: 3 },
    ];
    const strategy = clipped(createStrategy({ name: "fedavg" }), 2);
    updates.forEach(({ values, weight }, i) => {
      const u = strategy.processUpdate!({ clientId: `c${i}`, layout, source: arraySource(Float32Array.from(values)), weight });
      new StreamingSum(sql, "sum", layout, { count: i, totalWeight: 0 }).add(u.source, u.weight);
    });
    const sum = new StreamingSum(sql, "sum", layout, { count: 2, totalWeight: 4 });
    closeSegments(sql, {
      layout,
      globalKey: "v0",
      dataStart: header.dataStart,
      mean: (start, n) => sum.mean(start, n),
      strategy,
      round: 0,
      slots: [],
      stateKey: (s) => `state/${s}`,
      nextKey: "v1",
      nextStateKey: (s) => `next/${s}`,
    });
    const bytes = readBlob(sql, "v1")!;
    const next = readSafetensorsHeader(bytes);
    const clippedU1 = [6, 0, 0, 8, 0].map((x) => x * 0.2);
    const mean = clippedU1.map((x, i) => (x + 3 * updates[1]!.values[i]!) / 4);
    const want = [1, 2, 3, -1, 0].map((g, i) => g + mean[i]!);
    const values = new Float32Array(bytes.slice(next.dataStart).buffer);
    for (const [i, w] of want.entries()) expect(values[i]).toBeCloseTo(w, 6);
    // Without the wrapper the same updates give another version: the hook is what changed it.
    expect(values[0]).not.toBeCloseTo(1 + (6 + 0) / 4, 3);
  });
});
