// Binary values larger than a row may hold, split into chunks: the platform allows 2 MB per row or
// BLOB, which local SQLite does not enforce, so the chunking is ours (docs/ARCHITECTURE.md, "Platform limits").

/**
 * The part of a Durable Object's SqlStorage these helpers call, structurally, so the same code runs over
 * node:sqlite in bench/ (SqlStorage satisfies it).
 */
export interface SqlExec {
  exec<T extends Record<string, ArrayBuffer | string | number | null>>(query: string, ...bindings: unknown[]): { toArray(): T[]; one(): T };
}

/** 1 MiB: half the platform's row limit. */
export const CHUNK_BYTES = 1 << 20;

/** Replaces the value under `key`; call inside transactionSync so a reader never sees half of it. */
export function writeBlob(sql: SqlExec, key: string, bytes: Uint8Array, chunkBytes = CHUNK_BYTES): void {
  sql.exec("DELETE FROM blobs WHERE key = ?", key);
  const count = Math.max(1, Math.ceil(bytes.length / chunkBytes));
  for (let i = 0; i < count; i++)
    sql.exec("INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?)", key, i, bytes.subarray(i * chunkBytes, (i + 1) * chunkBytes));
}

export function readBlob(sql: SqlExec, key: string): Uint8Array | null {
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

export function deleteBlob(sql: SqlExec, key: string): void {
  sql.exec("DELETE FROM blobs WHERE key = ?", key);
}

/** Bytes [offset, offset + length) of the value under `key`, reading only the chunks that hold them. */
export function readBlobRange(sql: SqlExec, key: string, offset: number, length: number, chunkBytes = CHUNK_BYTES): Uint8Array {
  const out = new Uint8Array(length);
  if (length === 0) return out;
  const first = Math.floor(offset / chunkBytes);
  const last = Math.floor((offset + length - 1) / chunkBytes);
  const rows = sql
    .exec<{ chunk: number; data: ArrayBuffer }>(
      "SELECT chunk, data FROM blobs WHERE key = ? AND chunk BETWEEN ? AND ? ORDER BY chunk",
      key,
      first,
      last,
    )
    .toArray();
  if (rows.length !== last - first + 1) throw new Error(`blob "${key}" has no bytes ${offset}-${offset + length}`);
  for (const r of rows) {
    const base = r.chunk * chunkBytes;
    const from = Math.max(offset, base);
    const to = Math.min(offset + length, base + r.data.byteLength);
    if (to > from) out.set(new Uint8Array(r.data, from - base, to - from), from - offset);
  }
  return out;
}

/** Float32 elements [start, start + n) of a value that is a flat float32 vector. */
export function readFloats(sql: SqlExec, key: string, start: number, n: number): Float32Array {
  return new Float32Array(readBlobRange(sql, key, start * 4, n * 4).buffer);
}

/**
 * Writes a value a part at a time, in rows of `chunkBytes`, so a value larger than memory can be written
 * by parts; call inside transactionSync, from `open` to `end`.
 */
export class BlobWriter {
  private readonly sql: SqlExec;
  private readonly key: string;
  private readonly chunkBytes: number;
  private buffer: Uint8Array;
  private filled = 0;
  private chunk = 0;

  constructor(sql: SqlExec, key: string, chunkBytes = CHUNK_BYTES) {
    this.sql = sql;
    this.key = key;
    this.chunkBytes = chunkBytes;
    this.buffer = new Uint8Array(chunkBytes);
    sql.exec("DELETE FROM blobs WHERE key = ?", key);
  }

  write(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.chunkBytes - this.filled);
      this.buffer.set(bytes.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === this.chunkBytes) this.flush();
    }
  }

  end(): void {
    if (this.filled > 0 || this.chunk === 0) this.flush();
  }

  private flush(): void {
    this.sql.exec("INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?)", this.key, this.chunk++, this.buffer.subarray(0, this.filled));
    this.filled = 0;
  }
}

/**
 * Writes a stream's bytes under `key`, in rows of CHUNK_BYTES whatever chunks the stream yields (a stream
 * over RPC is re-chunked on the way). Rows commit as they fill, so write under a key of its own and rename
 * it in a transaction once the stream ends; returns the bytes written.
 */
export async function writeStreamBlob(sql: SqlExec, key: string, stream: ReadableStream<Uint8Array>): Promise<number> {
  const out = new BlobWriter(sql, key);
  let bytes = 0;
  const reader = stream.getReader();
  for (let part = await reader.read(); !part.done; part = await reader.read()) {
    out.write(part.value);
    bytes += part.value.length;
  }
  out.end();
  return bytes;
}
