// What readers see of a federation's rounds and versions: a round with its receipts and task, the
// rounds' outcomes, and the methods' derived reads of versions (a method's `views`).
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { METRICS_PAGE } from "../../src/protocol/federation.ts";
import { AggregatorError, refusing } from "./errors.ts";
import type { FederationStore } from "./storage.ts";
import type { RoundResult, RoundSummary, RoundView } from "./types.ts";

/** A view's query parameter: a non-negative integer (the coordinator's route checks the same). */
const PARAM = /^\d{1,9}$/;

export class Views {
  private readonly store: FederationStore;

  constructor(store: FederationStore) {
    this.store = store;
  }

  round(id: string, round: number): RoundView {
    const fed = this.store.get(id);
    const r = this.store.roundRow(id, round);
    const { local, method, model } = fed.config;
    return {
      federationId: id,
      round,
      status: r.status,
      baseVersion: r.base_version,
      sampled: this.store.sampled(id, round),
      openedAt: r.opened_at,
      deadline: r.deadline,
      phase: r.phase,
      uploads: r.uploads,
      totalWeight: r.total_weight,
      closedAt: r.closed_at,
      result: r.result ? (JSON.parse(r.result) as RoundResult) : null,
      detail: this.store.detailDropped(fed, round) ? "dropped" : "kept",
      receipts: this.store.sql
        .exec<{ client_id: string; received_at: number; num_examples: number; fold_ms: number; bytes: number }>(
          "SELECT client_id, received_at, num_examples, fold_ms, bytes FROM receipts WHERE federation_id = ? AND round = ? " +
            "ORDER BY received_at, client_id",
          id,
          round,
        )
        .toArray()
        .map((x) => ({
          clientId: x.client_id,
          receivedAt: x.received_at,
          numExamples: x.num_examples,
          foldMs: x.fold_ms,
          bytes: x.bytes,
        })),
      task: {
        proximalMu: createStrategy(fed.config.strategy).configureTrain(round).proximalMu,
        local,
        method,
        model: { name: model.name, quant: model.quant },
        seed: fed.config.seed,
        createdAt: fed.createdAt,
        ...(fed.config.uploadDtype ? { uploadDtype: fed.config.uploadDtype } : {}),
        ...(fed.config.topK !== undefined ? { topK: fed.config.topK } : {}),
        ...(fed.config.downloadDtype ? { downloadDtype: fed.config.downloadDtype } : {}),
      },
    };
  }

  /**
   * The rounds from `from` on with their outcome and aggregated client metrics, oldest first: at most `limit`,
   * and past the first, no more than METRICS_PAGE.bytes of results (a reader asks again from after the last).
   */
  metrics(id: string, from: number, limit: number): RoundSummary[] {
    this.store.get(id);
    const rows = this.store.sql.exec<{
      round: number;
      status: RoundView["status"];
      opened_at: number;
      closed_at: number | null;
      uploads: number;
      total_weight: number;
      result: string | null;
    }>("SELECT * FROM rounds WHERE federation_id = ? AND round >= ? ORDER BY round LIMIT ?", id, from, limit);
    const page: RoundSummary[] = [];
    let bytes = 0;
    for (const r of rows) {
      bytes += r.result?.length ?? 0;
      if (page.length > 0 && bytes > METRICS_PAGE.bytes) break;
      page.push({
        round: r.round,
        status: r.status,
        openedAt: r.opened_at,
        closedAt: r.closed_at,
        uploads: r.uploads,
        totalWeight: r.total_weight,
        result: r.result ? (JSON.parse(r.result) as RoundView["result"]) : null,
      });
    }
    return page;
  }

  /** A method's derived read of a version (`views` of its server side), with its query parameters. */
  versionView(id: string, version: number, name: string, query: Readonly<Record<string, string>>): Uint8Array {
    const fed = this.store.get(id);
    const method = this.store.method(fed);
    const view = Object.hasOwn(method.side.views ?? {}, name) ? method.side.views![name] : undefined;
    if (!view)
      throw new AggregatorError("version_not_found", `"${id}" (method "${fed.config.method.type}") has no "${name}" view of its versions`);
    // A parameter the view does not read would make another cache key for the same bytes (the route keeps views in R2).
    const unread = Object.keys(query).find((k) => !view.params.includes(k));
    if (unread !== undefined)
      throw new AggregatorError(
        "view_params_invalid",
        `the "${name}" view reads ${view.params.length ? view.params.join(", ") : "no parameters"}, not "${unread.slice(0, 32)}"`,
      );
    const params: Record<string, number> = {};
    for (const p of view.params) {
      const raw = query[p] ?? "0";
      if (!PARAM.test(raw))
        throw new AggregatorError("version_not_found", `${p} must be a non-negative integer, got "${raw.slice(0, 20)}"`);
      params[p] = Number(raw);
    }
    return refusing(`the "${name}" view`, () =>
      view.read(method.config, { tensors: (v) => this.store.versionTensors(id, v).tensors }, version, params),
    );
  }
}
