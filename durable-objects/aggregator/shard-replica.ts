// Sharded aggregation, a shard object's side (docs/ARCHITECTURE.md, "Sharded aggregation"). A shard holds,
// for the round it serves, a replica of what an upload's stages read (the federation's row, the round's row,
// its own clients as the round's sample, the base version) and runs the same stages as the root would
// (uploads.ts) into a partial sum of its own. It takes its part from the root the first time one of its
// clients uploads, reports to the root when it has its part of the quorum, and is sealed by the root at the
// round's end, after which it refuses the round's uploads and serves its partial sum a chunk at a time.
import { deleteBlob, writeStreamBlob } from "../shared/blobs.ts";
import { SingleFlight } from "../shared/single-flight.ts";
import { AggregatorError } from "./errors.ts";
import type { MaskedShape, ShardDescriptor, ShardPeers, ShardSeal } from "./sharded-rounds.ts";
import { type FederationStore, keys } from "./storage.ts";
import type { FederationView, RoundRow, RoundView } from "./types.ts";

export class ShardReplica {
  private readonly store: FederationStore;
  private readonly peers: ShardPeers;
  /** A round's part being fetched from the root, so concurrent first uploads fetch it once. */
  private readonly adopting = new SingleFlight();

  constructor(store: FederationStore, peers: ShardPeers) {
    this.store = store;
    this.peers = peers;
  }

  /** Takes this shard's part of a round from the root, with the round's base version, unless it holds it. */
  async ensure(id: string, round: number, shard: number): Promise<void> {
    if (this.part(id, round)) return;
    return this.adopting.run(`${id}\n${round}`, async () => {
      const d = await this.fromRoot(id, this.peers.descriptor(id, round, shard));
      // A secure round's shard takes masked inputs in the input phase only, from the clients that shared their
      // keys by then; a part read before it would name none of them, so it is not kept.
      if (d.status === "open" && d.phase !== null && d.phase !== "input")
        throw new AggregatorError(
          "phase_closed",
          `round ${round} of "${id}" is in its ${d.phase} phase; masked inputs belong to its input phase`,
        );
      this.refuseDropped(d);
      const incoming = `${keys.version(id, d.baseVersion)}#incoming`;
      const fetch = d.status === "open" && !this.store.hasVersion(id, d.baseVersion);
      try {
        if (fetch)
          await this.fromRoot(
            id,
            this.peers.version(id, d.baseVersion).then((stream) => writeStreamBlob(this.store.sql, incoming, stream)),
          );
        this.store.storage.transactionSync(() => {
          this.adopt(d);
          if (fetch) {
            deleteBlob(this.store.sql, keys.version(id, d.baseVersion));
            this.store.sql.exec("UPDATE blobs SET key = ? WHERE key = ?", keys.version(id, d.baseVersion), incoming);
          }
        });
      } catch (e) {
        // A copy not adopted (the root failed mid-stream, or the federation was deleted meanwhile) is not kept.
        deleteBlob(this.store.sql, incoming);
        throw e;
      }
    });
  }

  /** A part of a federation whose root deleted it (dropShard remembers the id and creation time) is not taken. */
  private refuseDropped(d: ShardDescriptor): void {
    const dropped = this.store.sql
      .exec("SELECT 1 FROM dropped_federations WHERE federation_id = ? AND created_at = ?", d.federationId, d.createdAt)
      .toArray().length;
    if (dropped) throw new AggregatorError("federation_not_found", `no federation "${d.federationId}": it was deleted`);
  }

  /** A secure round's masked input, admitted by the shard's part: the round's sample here is its clients that shared keys. */
  maskedInput(fed: FederationView, round: RoundRow, _client: string): MaskedShape {
    const secure = this.part(fed.id, round.round)?.secure;
    if (round.phase !== "input" || !secure)
      throw new AggregatorError(
        "phase_closed",
        `round ${round.round} of "${fed.id}" is in its ${round.phase} phase; masked inputs belong to its input phase`,
      );
    return JSON.parse(secure) as MaskedShape;
  }

  /** A call to the federation's root: its refusals as they are, its failure as `shard_unavailable` (503, worth a retry). */
  private async fromRoot<T>(id: string, call: Promise<T>): Promise<T> {
    try {
      return await call;
    } catch (e) {
      if (e instanceof AggregatorError) throw e;
      throw new AggregatorError(
        "shard_unavailable",
        `the shard could not read its part of the round from "${id}"'s object ` +
          `(${e instanceof Error ? e.message : String(e)}); retry the upload`,
      );
    }
  }

  /** After an upload: at or past this shard's part of the quorum, it tells the root (which may close the round). */
  async afterUpload(fed: FederationView, round: number, uploads: number): Promise<RoundView["status"]> {
    const part = this.part(fed.id, round)!;
    if (uploads < part.quorum) return "open";
    try {
      return await this.peers.ready(fed.id, round, part.shard);
    } catch (e) {
      // The upload is folded and acknowledged; without the report the round closes at its deadline.
      console.error(
        `federation "${fed.id}" round ${round}: shard ${part.shard} could not report its quorum: ${e instanceof Error ? e.message : e}`,
      );
      return "open";
    }
  }

  /** Ends this shard's part of a round (the root's call): later uploads are refused; returns what it holds. */
  seal(d: ShardDescriptor): ShardSeal {
    const { sql } = this.store;
    const id = d.federationId;
    return this.store.storage.transactionSync(() => {
      this.adopt(d);
      sql.exec(
        "UPDATE rounds SET status = ? WHERE federation_id = ? AND round = ? AND status = 'open'",
        d.status === "failed" ? "failed" : "closed",
        id,
        d.round,
      );
      sql.exec("UPDATE round_shards SET sealed = 1 WHERE federation_id = ? AND round = ?", id, d.round);
      const r = this.store.roundRow(id, d.round);
      const chunks = sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM blobs WHERE key = ?", keys.sum(id, d.round)).one().n;
      const receipts = sql
        .exec<{
          client_id: string;
          idempotency_key: string;
          body_sha256: string;
          num_examples: number;
          metrics: string;
          received_at: number;
          fold_ms: number;
          bytes: number;
        }>(
          "SELECT client_id, idempotency_key, body_sha256, num_examples, metrics, received_at, fold_ms, bytes FROM receipts " +
            "WHERE federation_id = ? AND round = ? ORDER BY client_id",
          id,
          d.round,
        )
        .toArray()
        .map((x) => ({
          clientId: x.client_id,
          idempotencyKey: x.idempotency_key,
          bodySha256: x.body_sha256,
          numExamples: x.num_examples,
          metrics: x.metrics,
          receivedAt: x.received_at,
          foldMs: x.fold_ms,
          bytes: x.bytes,
        }));
      return { uploads: r.uploads, totalWeight: r.total_weight, withinClip: r.within_clip, chunks, receipts };
    });
  }

  /** One storage chunk of a sealed round's partial sum. */
  chunk(id: string, round: number, chunk: number): Uint8Array {
    if (!this.part(id, round)?.sealed) throw new AggregatorError("round_open", `shard of "${id}" round ${round} is not sealed`);
    const row = this.store.sql
      .exec<{ data: ArrayBuffer }>("SELECT data FROM blobs WHERE key = ? AND chunk = ?", keys.sum(id, round), chunk)
      .toArray()[0];
    if (!row) throw new AggregatorError("round_not_found", `shard of "${id}" round ${round} has no chunk ${chunk}`);
    return new Uint8Array(row.data);
  }

  /** The uploads this shard has accepted in a round (0 before any). */
  uploads(id: string, round: number): number {
    return (
      this.store.sql.exec<{ uploads: number }>("SELECT uploads FROM rounds WHERE federation_id = ? AND round = ?", id, round).toArray()[0]
        ?.uploads ?? 0
    );
  }

  /**
   * Writes the rows a round's part needs where they are missing (a sealed or failed round keeps its status),
   * and drops what earlier rounds left: their partial sums (merged before the root opened this round), other
   * versions and samples. A replica of an earlier federation of the same id (deleted) is dropped first.
   */
  private adopt(d: ShardDescriptor): void {
    const { sql } = this.store;
    const id = d.federationId;
    // The root was deleted while this call awaited it (its descriptor, its version): nothing of it is written back.
    this.refuseDropped(d);
    const held = sql.exec<{ created_at: number }>("SELECT created_at FROM federations WHERE id = ?", id).toArray()[0];
    if (held && held.created_at !== d.createdAt) {
      for (const table of ["receipts", "rounds", "round_clients", "round_shards"])
        sql.exec(`DELETE FROM ${table} WHERE federation_id = ?`, id);
      sql.exec("DELETE FROM federations WHERE id = ?", id);
      sql.exec("DELETE FROM blobs");
      this.store.forget(id);
    }
    // A late upload to an earlier round adopts that round's part too (to be refused as closed): it must not
    // move the federation's row back or drop the newer round's partial sum.
    const latest = sql.exec<{ n: number | null }>("SELECT MAX(round) AS n FROM round_shards WHERE federation_id = ?", id).one().n;
    const newest = latest === null || d.round >= latest;
    sql.exec(
      "INSERT INTO federations (id, config, created_at, version, clip) VALUES (?, ?, ?, ?, ?) " +
        `ON CONFLICT (id) DO ${newest ? "UPDATE SET version = excluded.version, clip = excluded.clip" : "NOTHING"}`,
      id,
      d.config,
      d.createdAt,
      d.baseVersion,
      d.clip,
    );
    if (!this.part(id, d.round)) {
      sql.exec(
        "INSERT INTO rounds (federation_id, round, status, base_version, sampled, opened_at, deadline, phase) " +
          "VALUES (?, ?, ?, ?, '[]', ?, ?, ?)",
        id,
        d.round,
        d.status,
        d.baseVersion,
        d.openedAt,
        d.deadline,
        d.phase,
      );
      this.store.recordSample(id, d.round, d.clients);
      sql.exec(
        "INSERT INTO round_shards (federation_id, round, shard, quorum, secure) VALUES (?, ?, ?, ?, ?)",
        id,
        d.round,
        d.shard,
        d.quorum,
        d.secure ? JSON.stringify(d.secure) : null,
      );
    }
    if (!newest) return;
    sql.exec("DELETE FROM blobs WHERE key LIKE 'sum/%' AND key <> ?", keys.sum(id, d.round));
    sql.exec(
      "DELETE FROM blobs WHERE key LIKE 'version/%' AND key NOT IN (?, ?)",
      keys.version(id, d.baseVersion),
      `${keys.version(id, d.baseVersion)}#incoming`,
    );
    // The earlier rounds' receipts and samples (the root copied them when it sealed those rounds), but the previous
    // round's: a client whose answer was lost retries its upload there, and gets its receipt again.
    this.store.dropRoundDetail(id, d.round - 2);
  }

  private part(id: string, round: number) {
    return this.store.sql
      .exec<{ shard: number; quorum: number; sealed: number; secure: string | null }>(
        "SELECT shard, quorum, sealed, secure FROM round_shards WHERE federation_id = ? AND round = ?",
        id,
        round,
      )
      .toArray()[0];
  }
}
