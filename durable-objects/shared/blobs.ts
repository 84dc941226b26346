// Binary values larger than a row may hold, split into chunks: the platform allows 2 MB per row or
// BLOB, which local SQLite does not enforce, so the chunking is ours (DESIGN.md, platform facts).

/** 1 MiB: half the platform's row limit. */
export const CHUNK_BYTES = 1 << 20;

/** Replaces the value under `key`; call inside transactionSync so a reader never sees half of it. */
export function writeBlob(sql: SqlStorage, key: string, bytes: Uint8Array, chunkBytes = CHUNK_BYTES): void {
  sql.exec("DELETE FROM blobs WHERE key = ?", key);
  const count = Math.max(1, Math.ceil(bytes.length / chunkBytes));
  for (let i = 0; i < count; i++) sql.exec("INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?)", key, i, bytes.subarray(i * chunkBytes, (i + 1) * chunkBytes));
}

export function readBlob(sql: SqlStorage, key: string): Uint8Array | null {
  const rows = sql.exec<{ data: ArrayBuffer }>("SELECT data FROM blobs WHERE key = ? ORDER BY chunk", key).toArray();
  if (rows.length === 0) return null;
  const out = new Uint8Array(rows.reduce((n, r) => n + r.data.byteLength, 0));
  let at = 0;
  for (const r of rows) {
    out.set(new Uint8Array(r.data), at);
    at += r.data.byteLength;
  }
  return out;
}

export function deleteBlob(sql: SqlStorage, key: string): void {
  sql.exec("DELETE FROM blobs WHERE key = ?", key);
}
