// Where benchmark attackers running "a little is enough" (Baruch et al. 2019) pool their honest updates: one
// object per (federation, round), bound as COLLUSION only to the attacking workers of a benchmark run
// (`fedflare run`'s attack field); a deployment never binds it.
import { DurableObject } from "cloudflare:workers";
import { readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { RPC_MAX_BYTES } from "../../src/protocol/platform-limits.ts";

export class Collusion extends DurableObject {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env as never);
    this.sql = ctx.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))",
    );
  }

  /**
   * Keeps `client`'s honest upload (once) and, when `colluders` have offered theirs, returns them all in
   * client order; null until then. Their total must cross one RPC answer.
   */
  offer(client: string, body: Uint8Array, colluders: number): Uint8Array[] | null {
    this.ctx.storage.transactionSync(() => {
      if (!readBlob(this.sql, client)) writeBlob(this.sql, client, body);
    });
    const keys = this.sql.exec<{ key: string }>("SELECT DISTINCT key FROM blobs ORDER BY key").toArray();
    if (keys.length < colluders) return null;
    const bodies = keys.map((k) => readBlob(this.sql, k.key)!);
    const bytes = bodies.reduce((n, b) => n + b.length, 0);
    if (bytes > RPC_MAX_BYTES - (1 << 20))
      throw new Error(`the colluders' ${bodies.length} updates are ${bytes} bytes, more than one RPC answer carries: use fewer colluders`);
    return bodies;
  }
}
