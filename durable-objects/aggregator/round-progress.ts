// Where each sampled client of an open round is (its heartbeats, src/protocol/progress.ts), kept in the
// object's memory only: one entry per sampled client of each federation's latest open round, so it is
// bounded by the round's sample, and a restart forgets it (the next heartbeats bring it back). A client
// reports at most every MIN_INTERVAL_MS.
import type { ProgressReport } from "../../src/protocol/progress.ts";
import { AggregatorError } from "./errors.ts";
import type { FederationStore } from "./storage.ts";

export const MIN_INTERVAL_MS = 2000;

export type ClientProgress = ProgressReport & { at: number };

export class RoundProgress {
  private readonly store: FederationStore;
  /** By federation: its open round and the sampled clients' latest reports. */
  private readonly rounds = new Map<string, { round: number; clients: Map<string, ClientProgress> }>();

  constructor(store: FederationStore) {
    this.store = store;
  }

  report(id: string, round: number, client: string, report: ProgressReport, now: number): ClientProgress {
    this.store.readBy(id, client);
    const r = this.store.roundRow(id, round);
    if (r.status !== "open") throw new AggregatorError("round_closed", `round ${round} of "${id}" is ${r.status}`);
    if (!this.store.isSampled(id, round, client))
      throw new AggregatorError("client_not_sampled", `client "${client}" was not sampled for round ${round}`);
    let kept = this.rounds.get(id);
    if (!kept || kept.round !== round) {
      kept = { round, clients: new Map() };
      this.rounds.set(id, kept);
    }
    const last = kept.clients.get(client);
    if (last && now - last.at < MIN_INTERVAL_MS)
      throw new AggregatorError(
        "too_frequent",
        `client "${client}" reported progress ${now - last.at} ms ago; report at most every ${MIN_INTERVAL_MS} ms`,
      );
    const entry = { ...report, at: now };
    kept.clients.set(client, entry);
    return entry;
  }

  /** The round's latest reports by client (empty for a round that is not the latest one reported). */
  of(id: string, round: number): Record<string, ClientProgress> {
    const kept = this.rounds.get(id);
    return kept?.round === round ? Object.fromEntries(kept.clients) : {};
  }

  /** Forgets a federation (deleted). */
  forget(id: string): void {
    this.rounds.delete(id);
  }
}
