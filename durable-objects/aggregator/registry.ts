// The registry of federations, kept by the one object named "_registry": each federation's id, members
// and upload cap, so the coordinator checks a client's membership and an id's existence before it
// addresses (and so creates) the federation's own object.

export interface RegistryEntry {
  id: string;
  clients: string[];
  maxUploadBytes: number;
  /**
   * When the federation was created (its FederationView's createdAt): with the id, it names this federation
   * and no later one of the same id (absent in entries registered before it was kept).
   */
  createdAt?: number;
  /** The federation's shard objects, to which the coordinator routes uploads (src/fl/shards.ts); absent: one object. */
  shards?: number;
}

export class Registry {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  register(entry: RegistryEntry, now: number): void {
    this.sql.exec(
      "INSERT INTO registry (federation_id, created_at, entry) VALUES (?, ?, ?) ON CONFLICT (federation_id) " +
        "DO UPDATE SET entry = excluded.entry",
      entry.id,
      now,
      JSON.stringify({ clients: entry.clients, maxUploadBytes: entry.maxUploadBytes, createdAt: entry.createdAt, shards: entry.shards }),
    );
  }

  lookup(id: string): RegistryEntry | null {
    const row = this.sql.exec<{ entry: string | null }>("SELECT entry FROM registry WHERE federation_id = ?", id).toArray()[0];
    if (!row?.entry) return null;
    const e = JSON.parse(row.entry) as Omit<RegistryEntry, "id">;
    return {
      id,
      clients: e.clients,
      maxUploadBytes: e.maxUploadBytes,
      ...(e.createdAt === undefined ? {} : { createdAt: e.createdAt }),
      ...(e.shards === undefined ? {} : { shards: e.shards }),
    };
  }

  unregister(id: string): void {
    this.sql.exec("DELETE FROM registry WHERE federation_id = ?", id);
  }

  /** Every registered federation id, oldest first. */
  ids(): string[] {
    return this.sql
      .exec<{ federation_id: string }>("SELECT federation_id FROM registry WHERE entry IS NOT NULL ORDER BY created_at, federation_id")
      .toArray()
      .map((r) => r.federation_id);
  }
}
