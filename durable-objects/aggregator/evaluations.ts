// Federated evaluation (issue 22): the versions the clients are asked to evaluate (by the operator, or
// every k-th version as it is made), each client's report of its own held-out scores (once per version;
// the same report again gets the same answer), and the example-weighted mean of the reports.
import { parseEvaluationReport } from "../../src/protocol/evaluation.ts";
import type { SqlExec } from "../shared/blobs.ts";
import { AggregatorError, refusing } from "./errors.ts";
import { roundMetrics } from "./rounds.ts";
import type { FederationStore } from "./storage.ts";

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
  clients: { clientId: string; numExamples: number; metrics: Record<string, number>; receivedAt: number }[];
}

/** Asks the clients to evaluate `version` (again: nothing changes); inside the caller's transaction. */
export function askToEvaluate(sql: SqlExec, id: string, version: number, now: number): void {
  sql.exec(
    "INSERT INTO evaluation_requests (federation_id, version, requested_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    id,
    version,
    now,
  );
}

type Row = { client_id: string; num_examples: number; metrics: string; received_at: number };

export class Evaluations {
  private readonly store: FederationStore;

  constructor(store: FederationStore) {
    this.store = store;
  }

  request(id: string, version: number, now: number): { federationId: string; version: number; requestedAt: number } {
    this.store.get(id);
    if (!this.store.hasVersion(id, version))
      throw new AggregatorError("version_not_found", `"${id}" has no version ${version} to evaluate`);
    askToEvaluate(this.store.sql, id, version, now);
    return { federationId: id, version, requestedAt: this.requested(id, version)! };
  }

  private requested(id: string, version: number): number | null {
    const row = this.store.sql
      .exec<{ requested_at: number }>("SELECT requested_at FROM evaluation_requests WHERE federation_id = ? AND version = ?", id, version)
      .toArray()[0];
    return row?.requested_at ?? null;
  }

  /** The versions `client` is asked to evaluate and has not reported, newest first. */
  pending(id: string, client: string): number[] {
    return this.store.sql
      .exec<{ version: number }>(
        "SELECT r.version FROM evaluation_requests r WHERE r.federation_id = ? AND NOT EXISTS " +
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
    if (this.requested(id, version) === null)
      throw new AggregatorError("evaluation_not_requested", `no evaluation of version ${version} of "${id}" was asked for`);
    const report = refusing("evaluation", () => parseEvaluationReport(body));
    if (report.numExamples > fed.config.maxExamplesPerClient)
      throw new AggregatorError(
        "metadata_invalid",
        `evaluation report: numExamples ${report.numExamples} is over maxExamplesPerClient ${fed.config.maxExamplesPerClient}`,
      );
    const metrics = JSON.stringify(report.metrics);
    const earlier = this.rows(id, version).find((r) => r.client_id === client);
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
      .exec<{ version: number; requested_at: number }>(
        "SELECT version, requested_at FROM evaluation_requests WHERE federation_id = ? ORDER BY version",
        id,
      )
      .toArray()
      .map((r) => {
        const { clients: _, ...folded } = this.fold(id, r.version, r.requested_at);
        return folded;
      });
  }

  view(id: string, version: number): EvaluationView {
    this.store.get(id);
    const requestedAt = this.requested(id, version);
    if (requestedAt === null)
      throw new AggregatorError("version_not_found", `no evaluation of version ${version} of "${id}" was asked for`);
    return this.fold(id, version, requestedAt);
  }

  /** A requested version's reports and their example-weighted mean. */
  private fold(id: string, version: number, requestedAt: number): EvaluationView {
    const clients = this.rows(id, version).map((r) => ({
      clientId: r.client_id,
      numExamples: r.num_examples,
      metrics: JSON.parse(r.metrics) as Record<string, number>,
      receivedAt: r.received_at,
    }));
    return {
      federationId: id,
      version,
      requestedAt,
      reports: clients.length,
      numExamples: clients.reduce((n, c) => n + c.numExamples, 0),
      metrics: clients.length ? roundMetrics(clients) : {},
      clients,
    };
  }

  private rows(id: string, version: number): Row[] {
    return this.store.sql
      .exec<Row>(
        "SELECT client_id, num_examples, metrics, received_at FROM evaluations WHERE federation_id = ? AND version = ? " +
          "ORDER BY received_at, client_id",
        id,
        version,
      )
      .toArray();
  }
}
