import { applyMigrations } from "../shared/migrations.ts";

// The aggregator's schema, version by version (applied by shared/migrations.ts).
export const MIGRATIONS: readonly (readonly string[])[] = [
  // v1: federations and their validated config (JSON).
  [
    `CREATE TABLE federations (
      id TEXT PRIMARY KEY,
      config TEXT NOT NULL,
      created_at INTEGER NOT NULL
    )`,
  ],
  // v2: rounds, upload receipts, replay-protection nonces, and chunked binary values (global adapter
  // versions, running sums, server state) kept under the platform's 2 MB row limit.
  [
    "ALTER TABLE federations ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
    `CREATE TABLE rounds (
      federation_id TEXT NOT NULL,
      round INTEGER NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'failed')),
      base_version INTEGER NOT NULL,
      sampled TEXT NOT NULL,
      opened_at INTEGER NOT NULL,
      deadline INTEGER NOT NULL,
      uploads INTEGER NOT NULL DEFAULT 0,
      total_weight REAL NOT NULL DEFAULT 0,
      closed_at INTEGER,
      result TEXT,
      PRIMARY KEY (federation_id, round)
    )`,
    "CREATE INDEX rounds_open_deadline ON rounds (deadline) WHERE status = 'open'",
    `CREATE TABLE receipts (
      federation_id TEXT NOT NULL,
      round INTEGER NOT NULL,
      client_id TEXT NOT NULL,
      idempotency_key TEXT NOT NULL,
      body_sha256 TEXT NOT NULL,
      num_examples INTEGER NOT NULL,
      metrics TEXT NOT NULL,
      received_at INTEGER NOT NULL,
      fold_ms REAL NOT NULL,
      PRIMARY KEY (federation_id, round, client_id)
    )`,
    `CREATE TABLE nonces (
      client_id TEXT NOT NULL,
      nonce TEXT NOT NULL,
      expires_at INTEGER NOT NULL,
      PRIMARY KEY (client_id, nonce)
    )`,
    `CREATE TABLE blobs (
      key TEXT NOT NULL,
      chunk INTEGER NOT NULL,
      data BLOB NOT NULL,
      PRIMARY KEY (key, chunk)
    )`,
  ],
  // v3: the registry of federation ids, kept by the object named REGISTRY (one object per federation
  // holds the rest), so the coordinator can list them.
  ["CREATE TABLE registry (federation_id TEXT PRIMARY KEY, created_at INTEGER NOT NULL)"],
  // v4: each registry entry's members and upload cap (JSON), read before a federation's object is
  // addressed; entries registered before v4 have none and are not served until registered again.
  ["ALTER TABLE registry ADD COLUMN entry TEXT"],
  // v5: the server state as the strategy's round and slot names here, each slot a flat float32 blob
  // (state/<id>/<slot>) closed a segment at a time; running sums are flat float32 blobs too.
  [
    "ALTER TABLE federations ADD COLUMN server_round INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE federations ADD COLUMN server_slots TEXT NOT NULL DEFAULT '[]'",
  ],
  // v6: a private federation's clip in force (null: the configured one; adaptive clipping moves it at each
  // close) and, per round, the updates that were within it.
  ["ALTER TABLE federations ADD COLUMN clip REAL", "ALTER TABLE rounds ADD COLUMN within_clip INTEGER NOT NULL DEFAULT 0"],
  // v7: secure aggregation (SecAgg+): a secure round's phase (null for a plain round; its deadline is the
  // phase's) and each client's messages of the key phases as they arrived (JSON, bytes as hex).
  [
    "ALTER TABLE rounds ADD COLUMN phase TEXT",
    `CREATE TABLE secagg (
      federation_id TEXT NOT NULL,
      round INTEGER NOT NULL,
      client_id TEXT NOT NULL,
      advert TEXT NOT NULL,
      shares TEXT,
      unmask TEXT,
      PRIMARY KEY (federation_id, round, client_id)
    )`,
  ],
  // v8: federated evaluation: the versions the clients are asked to evaluate, and each client's report.
  [
    `CREATE TABLE evaluation_requests (
      federation_id TEXT NOT NULL,
      version INTEGER NOT NULL,
      requested_at INTEGER NOT NULL,
      PRIMARY KEY (federation_id, version)
    )`,
    `CREATE TABLE evaluations (
      federation_id TEXT NOT NULL,
      version INTEGER NOT NULL,
      client_id TEXT NOT NULL,
      num_examples INTEGER NOT NULL,
      metrics TEXT NOT NULL,
      received_at INTEGER NOT NULL,
      PRIMARY KEY (federation_id, version, client_id)
    )`,
  ],
  // v9: a round's sampled clients as rows, so a client's membership is one indexed lookup (not a parse of
  // every id at every upload) and no statement binds the whole sample; rounds.sampled is no longer written.
  // And an index on the nonces' expiry, which every accepted request deletes by (a scan of every nonce before).
  [
    `CREATE TABLE round_clients (
      federation_id TEXT NOT NULL,
      round INTEGER NOT NULL,
      client_id TEXT NOT NULL,
      PRIMARY KEY (federation_id, round, client_id)
    )`,
    "INSERT INTO round_clients (federation_id, round, client_id) " +
      "SELECT r.federation_id, r.round, j.value FROM rounds r, json_each(r.sampled) j",
    "CREATE INDEX nonces_expiry ON nonces (expires_at)",
  ],
  // v10: sharded aggregation (docs/ARCHITECTURE.md, "Sharded aggregation"). In a federation's root object,
  // a row per round and shard: its part of the quorum, whether it reported reaching it, whether it is sealed
  // (its counts are then in the round's row and its receipts copied), and how many of its partial sum's
  // chunks there are and are merged into the round's sum. In a shard object, one such row for its own part,
  // with a secure round's masked-input shape (JSON: its length and weight cap).
  [
    `CREATE TABLE round_shards (
      federation_id TEXT NOT NULL,
      round INTEGER NOT NULL,
      shard INTEGER NOT NULL,
      quorum INTEGER NOT NULL,
      ready INTEGER NOT NULL DEFAULT 0,
      sealed INTEGER NOT NULL DEFAULT 0,
      chunks INTEGER NOT NULL DEFAULT 0,
      merged INTEGER NOT NULL DEFAULT 0,
      secure TEXT,
      PRIMARY KEY (federation_id, round, shard)
    )`,
    // And each receipt's upload size, for the bytes a round moved.
    "ALTER TABLE receipts ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0",
  ],
  // v11: a version's evaluation folded (JSON: reports, examples, the metrics' means) once its clients' reports
  // are dropped past keepRoundDetail versions (storage-budget.ts); null while they are kept.
  ["ALTER TABLE evaluation_requests ADD COLUMN folded TEXT"],
  // v12: in a shard object, the federations (by id and creation time) its root deleted: an upload that read its
  // part of a round from the root before the delete must not write it back afterwards (shard-replica.ts).
  ["CREATE TABLE dropped_federations (federation_id TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (federation_id, created_at))"],
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the aggregator's storage up to SCHEMA_VERSION and returns that version. */
export function migrate(storage: DurableObjectStorage): number {
  return applyMigrations(storage, MIGRATIONS);
}
