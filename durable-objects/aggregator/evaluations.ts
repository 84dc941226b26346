// Federated evaluation (issue 22): the versions the clients are asked to evaluate (by the operator, or
// every k-th version as it is made), each client's report of its own held-out scores (once per version;
// the same report again gets the same answer), and the example-weighted mean of the reports. Each client's
// report is kept for the latest keepRoundDetail versions asked (storage-budget.ts); an older version keeps
// only its fold, and takes no more reports.
import { parseEvaluationReport } from "../../src/protocol/evaluation.ts";
import type { FederationConfig } from "../../src/protocol/federation.ts";
import type { SqlExec } from "../shared/blobs.ts";
import { AggregatorError, refusing } from "./errors.ts";
import { roundMetrics } from "./rounds.ts";
import { roundDetailKept } from "./storage-budget.ts";
import type { FederationStore } from "./storage.ts";

/**
 * Versions one request folds at most: a federation holding many evaluated versions from before the limit folds
 * them over its next requests, not in one (each fold reads every report of its version).
 */
const FOLDED_PER_REQUEST = 16;

/** Versions a member is shown to evaluate at most, newest first. */
const PENDING = 16;

export interface EvaluationReceipt {
  federationId: string;
  version: number;
  clientId: string;
  numExamples: number;
  receivedAt: number;
  replayed: boolean;
}

export interface EvaluationView {
  federationId: string;
  version: number;
  requestedAt: number;
  reports: number;
  numExamples: number;
  /** The example-weighted mean of each metric over the reports that give it. */
  metrics: Record<string, number>;
  /** Whether each client's report is still kept (`clients`), or was dropped past keepRoundDetail versions (the fold stays). */
  detail: "kept" | "dropped";
  clients: { clientId: string; numExamples: number; metrics: Record<string, number>; receivedAt: number }[];
}

type Fold = Pick<EvaluationView, "reports" | "numExamples" | "metrics">;

/**
 * Asks the clients to evaluate `version` (again: nothing changes), and folds the reports of the versions asked
 * but the newest keepRoundDetail, dropping each client's; inside the caller's transaction.
 */
export function askToEvaluate(sql: SqlExec, id: string, config: FederationConfig, version: number, now: number): void {
  sql.exec(
    "INSERT INTO evaluation_requests (federation_id, version, requested_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    id,
    version,
    now,
  );
  const older = sql
    .exec<{ version: number }>(
      "SELECT version FROM evaluation_requests WHERE federation_id = ? AND folded IS NULL ORDER BY version DESC LIMIT ? OFFSET ?",
      id,
      FOLDED_PER_REQUEST,
      roundDetailKept(config),
    )
    .toArray();
  for (const { version: v } of older) {
    sql.exec(
      "UPDATE evaluation_requests SET folded = ? WHERE federation_id = ? AND version = ?",
      JSON.stringify(fold(rows(sql, id, v))),
      id,
      v,
    );
    sql.exec("DELETE FROM evaluations WHERE federation_id = ? AND version = ?", id, v);
  }
}

type Row = { client_id: string; num_examples: number; metrics: string; received_at: number };
/** A kept report's columns, as Row names them. */
const REPORT = "SELECT client_id, num_examples, metrics, received_at FROM evaluations WHERE federation_id = ? AND version = ?";

/** A version's kept reports, in the order they came. */
function rows(sql: SqlExec, id: string, version: number): Row[] {
  return sql.exec<Row>(`${REPORT} ORDER BY received_at, client_id`, id, version).toArray();
}

/** Reports folded: how many, their examples and the example-weighted mean of each metric. */
function fold(reports: readonly Row[]): Fold {
  const parsed = reports.map((r) => ({ numExamples: r.num_examples, metrics: JSON.parse(r.metrics) as Record<string, number> }));
  return {
    reports: parsed.length,
    numExamples: parsed.reduce((n, c) => n + c.numExamples, 0),
    metrics: parsed.length ? roundMetrics(parsed) : {},
  };
}

export class Evaluations {
  private readonly store: FederationStore;

  constructor(store: FederationStore) {
    this.store = store;
  }

  request(id: string, version: number, now: number): { federationId: string; version: number; requestedAt: number } {
    this.store.get(id);
    if (!this.store.hasVersion(id, version))
      throw new AggregatorError("version_not_found", `"${id}" has no version ${version} to evaluate`);
    const { config } = this.store.get(id);
    askToEvaluate(this.store.sql, id, config, version, now);
    const asked = this.requested(id, version)!;
    // Folded already, or older than the latest keepRoundDetail versions asked: no report of it would be kept.
    if (asked.folded !== null)
      throw new AggregatorError(
        "evaluation_closed",
        `version ${version}'s evaluation of "${id}" is closed: it is older than the latest ${roundDetailKept(config)} versions asked`,
      );
    return { federationId: id, version, requestedAt: asked.requested_at };
  }

  private requested(id: string, version: number): { requested_at: number; folded: string | null } | undefined {
    return this.store.sql
      .exec<{ requested_at: number; folded: string | null }>(
        "SELECT requested_at, folded FROM evaluation_requests WHERE federation_id = ? AND version = ?",
        id,
        version,
      )
      .toArray()[0];
  }

  /** The versions `client` is asked to evaluate and has not reported, newest first. */
  pending(id: string, client: string): number[] {
    return this.store.sql
      .exec<{ version: number }>(
        "SELECT r.version FROM evaluation_requests r WHERE r.federation_id = ? AND r.folded IS NULL AND NOT EXISTS " +
          "(SELECT 1 FROM evaluations e WHERE e.federation_id = r.federation_id AND e.version = r.version AND e.client_id = ?) " +
          "ORDER BY r.version DESC LIMIT ?",
        id,
        client,
        PENDING,
      )
      .toArray()
      .map((r) => r.version);
  }

  report(id: string, version: number, client: string, body: Uint8Array, now: number): EvaluationReceipt {
    const fed = this.store.readBy(id, client);
    const asked = this.requested(id, version);
    if (!asked) throw new AggregatorError("evaluation_not_requested", `no evaluation of version ${version} of "${id}" was asked for`);
    if (asked.folded !== null)
      throw new AggregatorError(
        "evaluation_closed",
        `version ${version}'s evaluation of "${id}" was folded when ${roundDetailKept(fed.config)} newer versions were asked for; ` +
          "report the versions still pending",
      );
    const report = refusing("evaluation", () => parseEvaluationReport(body));
    if (report.numExamples > fed.config.maxExamplesPerClient)
      throw new AggregatorError(
        "metadata_invalid",
        `evaluation report: numExamples ${report.numExamples} is over maxExamplesPerClient ${fed.config.maxExamplesPerClient}`,
      );
    const metrics = JSON.stringify(report.metrics);
    const earlier = this.store.sql.exec<Row>(`${REPORT} AND client_id = ?`, id, version, client).toArray()[0];
    const receipt = (r: Row, replayed: boolean): EvaluationReceipt => ({
      federationId: id,
      version,
      clientId: client,
      numExamples: r.num_examples,
      receivedAt: r.received_at,
      replayed,
    });
    if (earlier) {
      if (earlier.num_examples === report.numExamples && earlier.metrics === metrics) return receipt(earlier, true);
      throw new AggregatorError(
        "upload_conflict",
        `client "${client}" already reported version ${version}'s evaluation, with other values`,
      );
    }
    this.store.sql.exec(
      "INSERT INTO evaluations (federation_id, version, client_id, num_examples, metrics, received_at) VALUES (?, ?, ?, ?, ?, ?)",
      id,
      version,
      client,
      report.numExamples,
      metrics,
      now,
    );
    return receipt({ client_id: client, num_examples: report.numExamples, metrics, received_at: now }, false);
  }

  /** Every version asked for, oldest first, each with its folded reports (without each client's). */
  list(id: string): Omit<EvaluationView, "clients">[] {
    this.store.get(id);
    return this.store.sql
      .exec<{ version: number; requested_at: number; folded: string | null }>(
        "SELECT version, requested_at, folded FROM evaluation_requests WHERE federation_id = ? ORDER BY version",
        id,
      )
      .toArray()
      .map((r) => {
        const { clients: _, ...folded } = this.view(id, r.version, r);
        return folded;
      });
  }

  /** A requested version's reports and their example-weighted mean. */
  view(id: string, version: number, asked = this.requested(id, version)): EvaluationView {
    this.store.get(id);
    if (!asked) throw new AggregatorError("version_not_found", `no evaluation of version ${version} of "${id}" was asked for`);
    const head = { federationId: id, version, requestedAt: asked.requested_at };
    if (asked.folded !== null) return { ...head, ...(JSON.parse(asked.folded) as Fold), detail: "dropped", clients: [] };
    const kept = rows(this.store.sql, id, version);
    return {
      ...head,
      ...fold(kept),
      detail: "kept",
      clients: kept.map((r) => ({
        clientId: r.client_id,
        numExamples: r.num_examples,
        metrics: JSON.parse(r.metrics) as Record<string, number>,
        receivedAt: r.received_at,
      })),
    };
  }
}
