// A Durable Object's SQL over node:sqlite, for benchmarks and tests of the aggregator's storage code in
// Node: what it calls (exec, toArray, one), blobs as ArrayBuffers as workerd returns them.
import type { DatabaseSync } from "node:sqlite";
import type { SqlExec } from "../../durable-objects/shared/blobs.ts";

/** `onExec` runs before every statement (the aggregator benchmark samples memory there). */
export function nodeSql(db: DatabaseSync, onExec?: () => void): SqlExec {
  const exec = (query: string, ...bindings: unknown[]) => {
    onExec?.();
    const rows = db
      .prepare(query)
      .all(...(bindings as (Uint8Array | number | string)[]))
      .map((r) =>
        Object.fromEntries(
          Object.entries(r).map(([k, v]) => [k, v instanceof Uint8Array ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v]),
        ),
      );
    return { toArray: () => rows, one: () => rows[0] };
  };
  return { exec } as unknown as SqlExec;
}
