// A federation's rounds (docs/ARCHITECTURE.md, "The round"): open one with its seeded sample, end it at
// quorum, at the deadline or by the operator, and close it with the strategy over the accumulated mean.
// Every change is one transactionSync, so a restart at any point loses nothing that was acknowledged.
import { shuffled } from "../../src/data/lm-windows.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { FlError } from "../../src/fl/errors.ts";
import { isSharded } from "../../src/fl/shards.ts";
import { flatLayout } from "../../src/fl/flat-tensors.ts";
import { weightedMetricMean } from "../../src/fl/weighted-mean.ts";
import { nextClip as adaptiveClip, secureNormals } from "../../src/privacy/central-dp.ts";
import { federationEpsilon, federationStrategy } from "../../src/privacy/federation-privacy.ts";
import { secureUniform } from "../../src/privacy/secure-random.ts";
import { deleteBlob } from "../shared/blobs.ts";
import { type Accumulator, closeSegments, StreamingSum } from "./accumulator.ts";
import { BufferedUpdates, methodRule, robustRule } from "./buffered-updates.ts";
import { askToEvaluate } from "./evaluations.ts";
import { SecureRounds } from "./secure-rounds.ts";
import { type ShardPeers, ShardedRounds } from "./sharded-rounds.ts";
import { AggregatorError } from "./errors.ts";
import { type FederationStore, keys } from "./storage.ts";
import { roundDetailKept } from "./storage-budget.ts";
import type { FederationView, RoundResult, RoundRow } from "./types.ts";

/** How long the alarm waits before it retries a sharded round's end that a shard could not answer. */
const SHARD_RETRY_MS = 5000;

/** A round's result keeps this many metrics at most, so its row stays small whatever names clients report. */
const ROUND_METRICS = 32;

/**
 * The example-weighted mean of the metrics the most clients report (ties by name), ROUND_METRICS of them at
 * most: a round's, and a version's evaluation's (evaluations.ts).
 */
export function roundMetrics(results: { numExamples: number; metrics: Record<string, number> }[]): Record<string, number> {
  const reporters = new Map<string, number>();
  for (const r of results) for (const key of Object.keys(r.metrics)) reporters.set(key, (reporters.get(key) ?? 0) + 1);
  const kept = new Set(
    [...reporters]
      .sort(([a, n], [b, m]) => m - n || (a < b ? -1 : 1))
      .slice(0, ROUND_METRICS)
      .map(([key]) => key),
  );
  return weightedMetricMean(
    results.map((r) => ({
      numExamples: r.numExamples,
      metrics: Object.fromEntries(Object.entries(r.metrics).filter(([key]) => kept.has(key))),
    })),
  );
}

export class Rounds {
  private readonly store: FederationStore;
  /** Secure rounds' phases (secure-rounds.ts). */
  readonly secure: SecureRounds;
  /** Sharded rounds' plans, shards and merges (sharded-rounds.ts). */
  readonly sharded: ShardedRounds;

  constructor(store: FederationStore, peers: ShardPeers) {
    this.store = store;
    this.secure = new SecureRounds(store, this);
    this.sharded = new ShardedRounds(store, peers, (id, round) => this.secure.inputOf(id, round));
  }

  /** Where a round's accepted updates accumulate until it closes. */
  accumulator(id: string, round: RoundRow): Accumulator {
    const header = this.store.versionHeader(id, round.base_version);
    const layout = flatLayout(header);
    const fed = this.store.get(id);
    const method = this.store.method(fed);
    const own = method.side.aggregation?.(method.config) ?? null;
    const rule = fed.config.robust
      ? robustRule(fed.config.robust)
      : own && methodRule(own, layout, this.store.versionSource(id, round.base_version, header));
    if (rule) return new BufferedUpdates(this.store.sql, keys.updates(id, round.round), layout, rule, round.uploads);
    return new StreamingSum(this.store.sql, keys.sum(id, round.round), layout, { count: round.uploads, totalWeight: round.total_weight });
  }

  /** Opens the next round: samples its clients (seeded) and arms the deadline alarm. */
  async open(id: string, now: number): Promise<number> {
    const fed = this.store.get(id);
    if (fed.openRound !== null)
      throw new AggregatorError("round_open", `round ${fed.openRound} of "${id}" is still open; wait for it to close (quorum or deadline)`);
    if (fed.roundsDone >= fed.config.rounds)
      throw new AggregatorError("federation_finished", `"${id}" has completed its ${fed.config.rounds} rounds`);
    const budget = fed.config.privacy?.epsilonBudget;
    const next = federationEpsilon(fed.config, fed.roundsDone + 1);
    if (budget !== undefined && next && next.epsilon > budget)
      throw new AggregatorError(
        "privacy_budget_spent",
        `"${id}" has spent ε = ${fed.privacy!.epsilon.toFixed(3)} of its budget ${budget} (δ = ${next.delta}); ` +
          `one more round would reach ε = ${next.epsilon.toFixed(3)}`,
      );
    if (fed.version === 0 && !this.store.hasVersion(id, 0))
      throw new AggregatorError(
        "initial_missing",
        `"${id}" is a federation whose operator supplies version 0 (offsite-tuning's owner adapter): ` +
          `PUT /federations/${id}/versions/0 with the operator's token first (npx fedflare offsite emulator writes it)`,
      );
    const sql = this.store.sql;
    const round = (sql.exec<{ n: number | null }>("SELECT MAX(round) AS n FROM rounds WHERE federation_id = ?", id).one().n ?? 0) + 1;
    // A private federation's sample is drawn from the CSPRNG: the accountant's amplification by sampling
    // assumes no one can predict it, as anyone could from the federation's seed.
    const uniform = fed.config.privacy ? secureUniform() : seededUniform(fed.config.seed * 100_003 + round);
    const sampled = shuffled(fed.config.clients, uniform).slice(0, fed.config.clientsPerRound).sort();
    // A secure round opens with its advertise phase, whose deadline is the phase's.
    const secure = fed.config.secureAggregation;
    const deadline = now + (secure ? secure.phaseSeconds : fed.config.deadlineSeconds) * 1000;
    sql.exec(
      "INSERT INTO rounds (federation_id, round, status, base_version, sampled, opened_at, deadline, phase) " +
        "VALUES (?, ?, 'open', ?, '[]', ?, ?, ?)",
      id,
      round,
      fed.version,
      now,
      deadline,
      secure ? "advertise" : null,
    );
    this.store.recordSample(id, round, sampled);
    if (isSharded(fed.config)) this.sharded.plan(fed, round, sampled);
    await this.armAlarm();
    return round;
  }

  /** Closes the round if this upload brought it to quorum (a secure round: ends its input phase once all have sent); returns its status. */
  async afterUpload(fed: FederationView, round: number, uploads: number, now: number): Promise<"open" | "closed" | "failed"> {
    if (fed.config.secureAggregation) return this.secure.afterInput(fed.id, round, now);
    if (uploads < (fed.config.quorum ?? fed.config.clientsPerRound)) return "open";
    const status = this.finish(fed.id, round, now, "close");
    await this.armAlarm();
    return status;
  }

  /**
   * The operator's "close now": the open round closes with what it has, if that is at least minClients; a
   * secure round ends its current phase (and fails if too few clients remain for it).
   */
  async closeNow(id: string, round: number, now: number): Promise<void> {
    const r = this.openRow(id, round);
    if (r.phase !== null) return this.secure.advance(id, round, now);
    const fed = this.store.get(id);
    const uploads = isSharded(fed.config) ? await this.sharded.uploads(id, round) : r.uploads;
    if (uploads < fed.config.minClients)
      throw new AggregatorError(
        "round_short",
        `round ${round} of "${id}" has ${uploads} of the ${fed.config.minClients} uploads it needs to close; fail it instead ` +
          `(POST .../rounds/${round}/fail)`,
      );
    if (isSharded(fed.config)) await this.endSharded(id, round, now).catch((e: unknown) => this.retrySoon(id, round, now, e));
    else this.finish(id, round, now, "close");
    await this.armAlarm();
  }

  /** The operator's "fail now": the open round ends without a new version; its uploads are dropped. */
  async failNow(id: string, round: number, reason: string, now: number): Promise<void> {
    this.openRow(id, round);
    if (isSharded(this.store.get(id).config)) {
      await this.sharded.sealForFailure(id, round);
      // The round's end may have closed it while the shards were sealed: a closed round stays closed.
      if (this.store.roundRow(id, round).status !== "open") return;
    }
    this.finish(id, round, now, "fail", `failed by the operator: ${reason}`);
    await this.armAlarm();
  }

  /** The alarm's work: every open round past its deadline closes with at least the minimum, else fails. */
  async closeDue(now: number): Promise<void> {
    const due = this.store.sql
      .exec<{ federation_id: string; round: number; uploads: number; phase: string | null }>(
        "SELECT federation_id, round, uploads, phase FROM rounds WHERE status = 'open' AND deadline <= ?",
        now,
      )
      .toArray();
    let retry = false;
    for (const d of due) {
      const fed = this.store.get(d.federation_id);
      const end =
        d.phase !== null ? this.secure.advance(fed.id, d.round, now) : isSharded(fed.config) ? this.endSharded(fed.id, d.round, now) : null;
      if (end) {
        // A sharded round's end can wait for a shard that does not answer: the alarm tries again.
        await end.catch((e: unknown) => {
          if (!(e instanceof AggregatorError && e.code === "shard_unavailable")) throw e;
          console.error(`federation "${fed.id}" round ${d.round}: ${e.message}`);
          retry = true;
        });
        continue;
      }
      if (d.uploads >= fed.config.minClients) this.finish(d.federation_id, d.round, now, "close");
      else
        this.finish(
          d.federation_id,
          d.round,
          now,
          "fail",
          `deadline passed with ${d.uploads} of the ${fed.config.minClients} uploads needed`,
        );
    }
    await this.armAlarm(retry ? now + SHARD_RETRY_MS : 0);
  }

  /** A shard reached its part of the quorum (sharded-rounds.ts); once all have, the round ends. */
  async shardReady(id: string, round: number, shard: number, now: number): Promise<RoundRow["status"]> {
    // A secure round's input phase ends (its shards sealed and merged, then the unmask phase); a plain round ends.
    const end = () =>
      this.store.roundRow(id, round).phase === null ? this.endSharded(id, round, now) : this.secure.advance(id, round, now);
    const status = await this.sharded.ready(id, round, shard, end).catch((e: unknown) => this.retrySoon(id, round, now, e));
    await this.armAlarm();
    return status;
  }

  /**
   * A sharded round's end met a shard that did not answer: its deadline comes forward to SHARD_RETRY_MS from
   * now (it has its quorum, or the operator asked to close it) and the alarm is set to it, so it tries again
   * then; rethrows the refusal for the caller's answer.
   */
  private async retrySoon(id: string, round: number, now: number, e: unknown): Promise<never> {
    if (e instanceof AggregatorError && e.code === "shard_unavailable") {
      this.store.sql.exec(
        "UPDATE rounds SET deadline = MIN(deadline, ?) WHERE federation_id = ? AND round = ? AND status = 'open'",
        now + SHARD_RETRY_MS,
        id,
        round,
      );
      await this.armAlarm();
    }
    throw e;
  }

  /**
   * A sharded round's end: its shards sealed and their partial sums merged (sharded-rounds.ts), then it closes
   * with at least minClients uploads (always so at quorum or the operator's close), else fails.
   */
  private async endSharded(id: string, round: number, now: number): Promise<void> {
    try {
      await this.sharded.collect(id, round, () => {
        const uploads = this.store.roundRow(id, round).uploads;
        const min = this.store.get(id).config.minClients;
        if (uploads >= min) this.finish(id, round, now, "close");
        else this.finish(id, round, now, "fail", `deadline passed with ${uploads} of the ${min} uploads needed`);
      });
    } catch (e) {
      // The shards' sums overflow float32 when added (each was finite): the round cannot close, as a close that throws.
      if (!(e instanceof FlError)) throw e;
      this.finish(id, round, now, "fail", `merging the shards' sums failed: ${e.message}`);
    }
  }

  private openRow(id: string, round: number): RoundRow {
    const r = this.store.roundRow(id, round);
    if (r.status !== "open") throw new AggregatorError("round_closed", `round ${round} of "${id}" is already ${r.status}`);
    return r;
  }

  /**
   * Ends an open round in its own transaction: "close" applies the strategy (a close that throws marks
   * the round failed with the error as its reason, so no round stays open forever), "fail" drops what
   * the round accumulated. Returns the round's status after.
   */
  finish(id: string, round: number, now: number, action: "close" | "fail", reason = ""): "closed" | "failed" {
    if (action === "close") {
      try {
        this.store.storage.transactionSync(() => this.close(id, round, now));
        return "closed";
      } catch (e) {
        reason = `closing failed: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    // A failed round is the operator's to look into, whatever failed it: its reason goes to the log too.
    console.error(`federation "${id}" round ${round} failed: ${reason}`);
    this.store.storage.transactionSync(() => {
      this.secure.clear(id, round);
      // A plain round's accumulator (a robust round's buffered updates, the running sum) goes too.
      const row = this.store.roundRow(id, round);
      if (row.phase === null) this.accumulator(id, row).clear();
      this.store.sql.exec(
        "UPDATE rounds SET status = 'failed', closed_at = ?, result = ? WHERE federation_id = ? AND round = ?",
        now,
        JSON.stringify({ reason: reason.slice(0, 2000) }),
        id,
        round,
      );
      this.store.dropRoundDetail(id, round - roundDetailKept(this.store.get(id).config));
    });
    return "failed";
  }

  /**
   * Applies the strategy to the round's mean update and stores the next global version and server state,
   * a segment at a time (accumulator.ts); inside a transaction.
   */
  private close(id: string, round: number, now: number): void {
    const { sql } = this.store;
    const fed = this.store.get(id);
    const r = this.store.roundRow(id, round);
    const state = sql
      .exec<{ server_round: number; server_slots: string }>("SELECT server_round, server_slots FROM federations WHERE id = ?", id)
      .one();
    const previousSlots = JSON.parse(state.server_slots) as string[];
    const header = this.store.versionHeader(id, r.base_version);
    const version = fed.version + 1;
    const accumulated = r.phase !== null ? this.secure.mean(fed, r) : this.accumulator(id, r);
    const slots = closeSegments(sql, {
      layout: flatLayout(header),
      globalKey: keys.version(id, r.base_version),
      dataStart: header.dataStart,
      mean: (start, n) => accumulated.mean(start, n),
      strategy: federationStrategy(fed.config, { updates: r.uploads, clip: fed.privacy?.clip }),
      round: state.server_round,
      slots: previousSlots,
      stateKey: (slot) => keys.state(id, slot),
      nextKey: keys.version(id, version),
      nextStateKey: (slot) => `${keys.state(id, slot)}#next`,
    });
    for (const slot of previousSlots) deleteBlob(sql, keys.state(id, slot));
    for (const slot of slots) sql.exec("UPDATE blobs SET key = ? WHERE key = ?", keys.state(id, slot), `${keys.state(id, slot)}#next`);
    sql.exec("UPDATE federations SET server_round = ?, server_slots = ? WHERE id = ?", state.server_round + 1, JSON.stringify(slots), id);
    const receipts = sql
      .exec<{ num_examples: number; metrics: string; bytes: number }>(
        "SELECT num_examples, metrics, bytes FROM receipts WHERE federation_id = ? AND round = ?",
        id,
        round,
      )
      .toArray();
    const result: RoundResult = {
      version,
      uploads: r.uploads,
      totalWeight: r.total_weight,
      metrics: roundMetrics(
        receipts.map((x) => ({ numExamples: x.num_examples, metrics: JSON.parse(x.metrics) as Record<string, number> })),
      ),
      ...(fed.privacy ? { privacy: this.nextPrivacy(fed, r) } : {}),
      ...(accumulated instanceof BufferedUpdates ? accumulated.result() : {}),
      bytes: {
        up: receipts.reduce((n, x) => n + x.bytes, 0),
        version: sql.exec<{ n: number }>("SELECT SUM(LENGTH(data)) AS n FROM blobs WHERE key = ?", keys.version(id, r.base_version)).one()
          .n,
      },
    };
    accumulated.clear();
    // Version 0 stays (clients without a version start from it); the latest keepVersions stay besides.
    const pruned = version - fed.config.keepVersions;
    if (pruned > 0) deleteBlob(sql, keys.version(id, pruned));
    sql.exec("UPDATE federations SET version = ? WHERE id = ?", version, id);
    if (fed.config.evaluateEvery && version % fed.config.evaluateEvery === 0) askToEvaluate(sql, id, fed.config, version, now);
    sql.exec(
      "UPDATE rounds SET status = 'closed', closed_at = ?, result = ? WHERE federation_id = ? AND round = ?",
      now,
      JSON.stringify(result),
      id,
      round,
    );
    this.store.dropRoundDetail(id, round - roundDetailKept(fed.config));
  }

  /**
   * A private federation's accounting at a close: ε after this round and, with adaptive clipping, the next
   * round's clip from the noised count of this round's updates within the clip (stored for the uploads to come).
   */
  private nextPrivacy(fed: FederationView, r: RoundRow): NonNullable<RoundResult["privacy"]> {
    const p = fed.config.privacy!;
    const clip = fed.privacy!.clip;
    const round = { within: r.within_clip, updates: r.uploads, expected: fed.config.clientsPerRound };
    const nextClip = adaptiveClip(p, clip, round, () => secureNormals(1)[0]!);
    this.store.sql.exec("UPDATE federations SET clip = ? WHERE id = ?", nextClip, fed.id);
    return { ...federationEpsilon(fed.config, fed.roundsDone + 1)!, clip, nextClip };
  }

  /** The alarm points at the earliest open deadline, or `notBefore` if later; SQLite is the truth (alarms may repeat). */
  async armAlarm(notBefore = 0): Promise<void> {
    const next = this.store.sql.exec<{ d: number | null }>("SELECT MIN(deadline) AS d FROM rounds WHERE status = 'open'").one().d;
    if (next === null) await this.store.storage.deleteAlarm();
    else await this.store.storage.setAlarm(Math.max(next, notBefore));
  }
}
