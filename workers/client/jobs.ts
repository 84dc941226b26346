// The client trainer's job queue in its SQLite storage: one row per (federation, round), its status, its
// task once prepared, its progress and its upload's description; blobs under "<what>/<federation>/<round>".
import { applyMigrations } from "../../durable-objects/shared/migrations.ts";
import type { SecureStep } from "./secure-steps.ts";

const MIGRATIONS = [
  [
    `CREATE TABLE jobs (
      federation_id TEXT NOT NULL,
      round INTEGER NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('queued', 'training', 'uploaded', 'failed')),
      task TEXT,
      steps_done INTEGER NOT NULL DEFAULT 0,
      attempts INTEGER NOT NULL DEFAULT 0,
      detail TEXT,
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (federation_id, round)
    )`,
    "CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))",
  ],
  // The upload, once made, is kept (blob "delta/...") and described here, so retries send the same body.
  [
    "ALTER TABLE jobs ADD COLUMN upload_bytes INTEGER",
    "ALTER TABLE jobs ADD COLUMN upload_sha256 TEXT",
    "ALTER TABLE jobs ADD COLUMN upload_metrics TEXT",
  ],
  // Slices retried after a transient failure (the coordinator or an endpoint busy, down or unreachable).
  ["ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0"],
  // A secure round's step (secure-steps.ts); null for a plain round.
  ["ALTER TABLE jobs ADD COLUMN secure_step TEXT"],
  // When the job's federation was created: a federation created again under its id has rounds of its own.
  ["ALTER TABLE jobs ADD COLUMN created_at INTEGER"],
];

export interface JobView {
  federationId: string;
  round: number;
  status: "queued" | "training" | "uploaded" | "failed";
  stepsDone: number;
  detail: string | null;
  /** The upload's size and hex SHA-256 once made (null before), never its content. */
  uploadBytes: number | null;
  uploadSha256: string | null;
  /** The metrics the upload declares to the coordinator (loss, steps, bytes downloaded, API use). */
  uploadMetrics: Record<string, number> | null;
  /** In a secure round, the client's last step done (secure-steps.ts); null in a plain round. */
  secureStep: SecureStep | null;
  /** This client's onnxruntime WASM heap when asked (its peak so far in this isolate: it never shrinks). */
  wasmHeapBytes?: number;
}

export type JobRow = {
  federation_id: string;
  round: number;
  status: JobView["status"];
  task: string | null;
  steps_done: number;
  attempts: number;
  detail: string | null;
  upload_bytes: number | null;
  upload_sha256: string | null;
  upload_metrics: string | null;
  retries: number;
  secure_step: SecureStep | null;
  /** When the job's federation was created; null for a job queued before this was kept. */
  created_at: number | null;
};

/** The columns a job's progress changes; `updated_at` is set with every change. */
type JobChange = Partial<
  Pick<
    JobRow,
    | "status"
    | "task"
    | "steps_done"
    | "attempts"
    | "detail"
    | "upload_bytes"
    | "upload_sha256"
    | "upload_metrics"
    | "retries"
    | "secure_step"
  >
>;

/**
 * The key of a job's blob (its global version, training state, delta, honest update, secure round's keys):
 * "<what>/<federation>/<round>", the one shape Jobs.drop finds a job's blobs by.
 */
export const jobBlobKey = (job: Pick<JobRow, "federation_id" | "round">, what: string) => `${what}/${job.federation_id}/${job.round}`;

export class Jobs {
  private readonly sql: SqlStorage;

  constructor(storage: DurableObjectStorage) {
    applyMigrations(storage, MIGRATIONS);
    this.sql = storage.sql;
  }

  /**
   * Queues a round's job of the federation created at `createdAt`. A job already there stays as it is, unless
   * it was made for an earlier federation of this id (deleted and created again): the round it trained is
   * gone, so it is dropped with its blobs and this round's job queued in its place.
   */
  queue(federationId: string, round: number, createdAt: number): void {
    const held = this.sql
      .exec<{ created_at: number | null }>("SELECT created_at FROM jobs WHERE federation_id = ? AND round = ?", federationId, round)
      .toArray()[0];
    if (held?.created_at != null && held.created_at < createdAt) this.drop(federationId, round);
    this.sql.exec(
      "INSERT INTO jobs (federation_id, round, status, created_at, updated_at) VALUES (?, ?, 'queued', ?, ?) ON CONFLICT DO NOTHING",
      federationId,
      round,
      createdAt,
      Date.now(),
    );
  }

  /** Deletes a job and its blobs (jobBlobKey's, one segment before the federation). */
  private drop(federationId: string, round: number): void {
    const suffix = `/${federationId}/${round}`;
    this.sql.exec(
      "DELETE FROM blobs WHERE substr(key, -?) = ? AND instr(substr(key, 1, length(key) - ?), '/') = 0",
      suffix.length,
      suffix,
      suffix.length,
    );
    this.sql.exec("DELETE FROM jobs WHERE federation_id = ? AND round = ?", federationId, round);
  }

  /** The oldest job still to work on. */
  next(): JobRow | undefined {
    return this.sql.exec<JobRow>("SELECT * FROM jobs WHERE status IN ('queued', 'training') ORDER BY round LIMIT 1").toArray()[0];
  }

  view(federationId: string, round: number): JobView | null {
    const r = this.sql.exec<JobRow>("SELECT * FROM jobs WHERE federation_id = ? AND round = ?", federationId, round).toArray()[0];
    if (!r) return null;
    return {
      federationId: r.federation_id,
      round: r.round,
      status: r.status,
      stepsDone: r.steps_done,
      detail: r.detail,
      uploadBytes: r.upload_bytes,
      uploadSha256: r.upload_sha256,
      uploadMetrics: r.upload_metrics === null ? null : (JSON.parse(r.upload_metrics) as Record<string, number>),
      secureStep: r.secure_step,
    };
  }

  /** Sets a job's changed columns (the one UPDATE of the jobs table). */
  update(job: Pick<JobRow, "federation_id" | "round">, change: JobChange): void {
    const columns = Object.keys(change) as (keyof JobChange)[];
    this.sql.exec(
      `UPDATE jobs SET ${columns.map((c) => `${c} = ?`).join(", ")}, updated_at = ? WHERE federation_id = ? AND round = ?`,
      ...columns.map((c) => change[c] ?? null),
      Date.now(),
      job.federation_id,
      job.round,
    );
  }
}
