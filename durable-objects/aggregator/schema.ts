// Versioned migrations of the aggregator's SQLite storage: migration i takes the schema from version i
// to i + 1, each in one transaction with its version bump, so a crash mid-way leaves a known version.
const MIGRATIONS: readonly (readonly string[])[] = [
  // v1: federations and their validated config (JSON); a later issue adds rounds and uploads.
  [
    `CREATE TABLE federations (
      id TEXT PRIMARY KEY,
      config TEXT NOT NULL,
      created_at INTEGER NOT NULL
    )`,
  ],
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the storage up to SCHEMA_VERSION and returns that version. */
export function migrate(storage: DurableObjectStorage): number {
  const { sql } = storage;
  sql.exec("CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)");
  let version = sql.exec<{ version: number }>("SELECT version FROM schema_version").toArray()[0]?.version ?? 0;
  if (version > SCHEMA_VERSION) throw new Error(`storage schema v${version} is newer than this code (v${SCHEMA_VERSION})`);
  for (; version < SCHEMA_VERSION; version++) {
    const statements = MIGRATIONS[version]!;
    storage.transactionSync(() => {
      for (const statement of statements) sql.exec(statement);
      sql.exec("INSERT INTO schema_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version", version + 1);
    });
  }
  return version;
}
