// Versioned migrations of a Durable Object's SQLite storage: migration i takes the schema from version i
// to i + 1, each in one transaction with its version bump, so a crash mid-way leaves a known version.

/** Applies the migrations not applied yet; returns the storage's version. */
export function applyMigrations(storage: DurableObjectStorage, migrations: readonly (readonly string[])[]): number {
  const { sql } = storage;
  sql.exec("CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)");
  let version = sql.exec<{ version: number }>("SELECT version FROM schema_version").toArray()[0]?.version ?? 0;
  if (version > migrations.length) throw new Error(`storage schema v${version} is newer than this code (v${migrations.length})`);
  for (; version < migrations.length; version++) {
    const statements = migrations[version]!;
    storage.transactionSync(() => {
      for (const statement of statements) sql.exec(statement);
      sql.exec(
        "INSERT INTO schema_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        version + 1,
      );
    });
  }
  return version;
}
