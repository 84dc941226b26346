// A Durable Object's SQL with the platform's limits checked on every statement: production refuses a
// value over 2 MB, a statement over 100 KB and more than 100 bound parameters, and local SQLite refuses
// none of them (a 2.2 MB BLOB was accepted), so without this a test would pass what production throws on.
import { SQLITE_MAX_BINDINGS, SQLITE_STATEMENT_MAX_BYTES, SQLITE_VALUE_MAX_BYTES } from "../../src/protocol/platform-limits.ts";

export class StorageLimitError extends Error {
  override name = "StorageLimitError";
}

const utf8Bytes = (s: string) => (s.length * 3 <= SQLITE_VALUE_MAX_BYTES ? s.length : new TextEncoder().encode(s).length);

function valueBytes(v: SqlStorageValue): number {
  if (typeof v === "string") return utf8Bytes(v);
  if (v instanceof ArrayBuffer) return v.byteLength;
  if (ArrayBuffer.isView(v)) return (v as ArrayBufferView).byteLength;
  return 8;
}

export function guardedSql(sql: SqlStorage): SqlStorage {
  const exec: SqlStorage["exec"] = (query, ...bindings) => {
    if (utf8Bytes(query) > SQLITE_STATEMENT_MAX_BYTES)
      throw new StorageLimitError(
        `a SQL statement of ${query.length} characters is over the platform's ${SQLITE_STATEMENT_MAX_BYTES} bytes`,
      );
    if (bindings.length > SQLITE_MAX_BINDINGS)
      throw new StorageLimitError(`${bindings.length} bound parameters are over the platform's ${SQLITE_MAX_BINDINGS}`);
    let total = 0;
    bindings.forEach((b, i) => {
      const n = valueBytes(b as SqlStorageValue);
      if (n > SQLITE_VALUE_MAX_BYTES)
        throw new StorageLimitError(
          `parameter ${i + 1} of "${query.slice(0, 60)}" is ${n} bytes, over the platform's ` +
            `${SQLITE_VALUE_MAX_BYTES}-byte limit on a SQLite value`,
        );
      total += n;
    });
    // A row is at most 2 MB too; each of our statements writes one row, so its parameters together bound it.
    if (total > SQLITE_VALUE_MAX_BYTES)
      throw new StorageLimitError(
        `the parameters of "${query.slice(0, 60)}" are ${total} bytes together, over the platform's ` +
          `${SQLITE_VALUE_MAX_BYTES}-byte limit on a row`,
      );
    return sql.exec(query, ...bindings);
  };
  return new Proxy(sql, {
    get: (target, prop) => {
      if (prop === "exec") return exec;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
