// SecAgg+'s running sum of the masked inputs in Z_2^32 (src/secagg/protocol.ts), kept as one stored row
// per CHUNK_BYTES of words: what the aggregator holds of a secure round until its unmask phase (the sum of
// masked inputs, never an input), and what it then removes the masks from, a segment at a time, so a
// large adapter's sum never sits whole in the isolate. Call inside transactionSync.
import { addInto } from "../../src/secagg/fixed-point.ts";
import { CHUNK_BYTES, deleteBlob, readBlobRange, type SqlExec } from "../shared/blobs.ts";

/** Words a stored row holds. */
export const RING_SEGMENT = CHUNK_BYTES / 4;

export class RingSum {
  private readonly sql: SqlExec;
  readonly key: string;
  private readonly length: number;

  constructor(sql: SqlExec, key: string, length: number) {
    this.sql = sql;
    this.key = key;
    this.length = length;
  }

  /** Adds a masked input, read a segment at a time into `out`; `first`: the round's first (the sum starts at it). */
  add(read: (start: number, out: Uint32Array) => void, first: boolean): void {
    const words = new Uint32Array(RING_SEGMENT);
    for (let start = 0; start < this.length; start += RING_SEGMENT) {
      const w = words.subarray(0, Math.min(RING_SEGMENT, this.length - start));
      read(start, w);
      this.put(start, first ? w : addInto(this.read(start, w.length), w, 1));
    }
  }

  /** Words [start, start + n) of the sum. */
  read(start: number, n: number): Uint32Array {
    const bytes = readBlobRange(this.sql, this.key, 4 * start, 4 * n);
    return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }

  /** Adds sign · values into words [start, start + values.length): how the unmask phase removes a mask segment. */
  addAt(start: number, values: Uint32Array, sign: 1 | -1): void {
    for (let at = start; at < start + values.length; ) {
      const rowEnd = (Math.floor(at / RING_SEGMENT) + 1) * RING_SEGMENT;
      const n = Math.min(rowEnd, start + values.length) - at;
      const rowStart = rowEnd - RING_SEGMENT;
      const row = this.read(rowStart, Math.min(RING_SEGMENT, this.length - rowStart));
      addInto(row.subarray(at - rowStart, at - rowStart + n), values.subarray(at - start, at - start + n), sign);
      this.put(rowStart, row);
      at += n;
    }
  }

  clear(): void {
    deleteBlob(this.sql, this.key);
  }

  /**
   * Writes into `to` this sum with `apply` done to each row, from the first row `to` does not hold yet (an
   * earlier call, or a run a restart cut short, wrote the others), at most `rows` rows, while `open` holds
   * before each row and after its `apply` (a row computed is written unless `open` no longer holds). Returns
   * whether every row is written: how the unmasking runs in slices across invocations.
   */
  async transformInto(
    to: RingSum,
    apply: (start: number, row: Uint32Array) => Promise<unknown>,
    open: () => boolean,
    rows: number,
  ): Promise<boolean> {
    const written = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM blobs WHERE key = ?", to.key).one().n;
    const end = Math.min(this.length, (written + rows) * RING_SEGMENT);
    for (let start = written * RING_SEGMENT; start < end; start += RING_SEGMENT) {
      if (!open()) return false;
      const row = this.read(start, Math.min(RING_SEGMENT, this.length - start));
      await apply(start, row);
      if (!open()) return false;
      to.put(start, row);
    }
    return end === this.length;
  }

  /** Stores a whole row starting at word `start` (a multiple of RING_SEGMENT). */
  put(start: number, words: Uint32Array): void {
    this.sql.exec(
      "INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?) ON CONFLICT (key, chunk) DO UPDATE SET data = excluded.data",
      this.key,
      start / RING_SEGMENT,
      new Uint8Array(words.buffer, words.byteOffset, words.byteLength),
    );
  }
}
