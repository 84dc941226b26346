// Sharded aggregation, the root object's side (docs/ARCHITECTURE.md, "Sharded aggregation"): a sharded
// round's plan (each shard's clients and part of the quorum), what a shard reads to take its part, and the
// round's end: each shard sealed (its counts added to the round's row, its receipts copied here), then its
// partial sum merged into the round's sum one storage chunk at a time, then the close of any round. Each
// step commits with the record of its progress, so a restart of the root or of a shard at any point resumes
// where it stopped and merges nothing twice; a shard that cannot answer leaves the round open, the others'
// sealed sums kept, until it can (the alarm retries) or the operator fails the round.
import { isSharded, planShards, shardOf } from "../../src/fl/shards.ts";
import { addFold, checkFold } from "../../src/fl/weighted-mean.ts";
import type { SecurePhase } from "../../src/protocol/secure-aggregation.ts";
import { addInto } from "../../src/secagg/fixed-point.ts";
import { SingleFlight } from "../shared/single-flight.ts";
import { AggregatorError } from "./errors.ts";
import { type FederationStore, keys } from "./storage.ts";
import type { FederationView, RoundView } from "./types.ts";

type Status = RoundView["status"];

/** What a shard holds of a round: the federation as the root stores it, the round, and its own part. */
export interface ShardDescriptor {
  federationId: string;
  /** The federation's config as the root stores it (JSON), and its creation time, which names it. */
  config: string;
  createdAt: number;
  /** The clip this round's updates are held to (a private federation's; null otherwise). */
  clip: number | null;
  round: number;
  status: Status;
  /** A secure round's phase (a shard takes masked inputs in its input phase only); null for a plain round. */
  phase: SecurePhase | null;
  baseVersion: number;
  openedAt: number;
  deadline: number;
  shard: number;
  /** The round's sampled clients whose uploads this shard folds (a secure round's: those that shared their keys). */
  clients: string[];
  quorum: number;
  /** A secure round's masked inputs: their length in words and the weight cap each carries. */
  secure?: MaskedShape;
}

export interface MaskedShape {
  length: number;
  maxWeight: number;
}

export interface SecureInput {
  sharers: readonly string[];
  shape: MaskedShape;
}

/** A sealed shard's part of a round: its counts, how many chunks its partial sum has, and its receipts. */
export interface ShardSeal {
  uploads: number;
  totalWeight: number;
  withinClip: number;
  chunks: number;
  receipts: {
    clientId: string;
    idempotencyKey: string;
    bodySha256: string;
    numExamples: number;
    metrics: string;
    receivedAt: number;
    foldMs: number;
    bytes: number;
  }[];
}

/** The calls between a federation's root object and its shard objects (index.ts makes them over RPC). */
export interface ShardPeers {
  /** Root → shard: ends the shard's part of a round (uploads are refused after) and says what it holds. */
  seal(id: string, d: ShardDescriptor): Promise<ShardSeal>;
  /** Root → shard: one storage chunk of a sealed shard's partial sum. */
  chunk(id: string, round: number, shard: number, chunk: number): Promise<Uint8Array>;
  /** Root → shard: the uploads the shard has accepted in a round. */
  uploads(id: string, round: number, shard: number): Promise<number>;
  /** Root → shard: deletes what the shard holds of the federation. */
  drop(id: string, shard: number, createdAt: number): Promise<void>;
  /** Shard → root: its part of a round. */
  descriptor(id: string, round: number, shard: number): Promise<ShardDescriptor>;
  /** Shard → root: a version's bytes. */
  version(id: string, version: number): Promise<ReadableStream<Uint8Array>>;
  /** Shard → root: the shard has its part of the quorum; answers the round's status after. */
  ready(id: string, round: number, shard: number): Promise<Status>;
}

/** Receipt columns a statement binds per row: 10, so 9 rows stay inside SQLite's 100 bindings. */
const RECEIPT_ROWS = 9;

export class ShardedRounds {
  private readonly store: FederationStore;
  private readonly peers: ShardPeers;
  /** A secure round's input phase: its clients that shared their keys and the masked inputs' shape (secure-rounds.ts). */
  private readonly secureInput: (id: string, round: number) => SecureInput;
  /** A round's end in progress, so the alarm, the operator and a shard's report share one. */
  private readonly ending = new SingleFlight();

  constructor(store: FederationStore, peers: ShardPeers, secureInput: (id: string, round: number) => SecureInput) {
    this.store = store;
    this.peers = peers;
    this.secureInput = secureInput;
  }

  /** Records a new round's part for each shard (one that folds nobody starts ready). */
  plan(fed: FederationView, round: number, sampled: readonly string[]): void {
    const quorum = fed.config.quorum ?? fed.config.clientsPerRound;
    for (const p of planShards(round, sampled, fed.config.shards!, quorum))
      this.store.sql.exec(
        "INSERT INTO round_shards (federation_id, round, shard, quorum, ready) VALUES (?, ?, ?, ?, ?)",
        fed.id,
        round,
        p.shard,
        p.quorum,
        p.quorum === 0 ? 1 : 0,
      );
  }

  /**
   * A shard's part of a round; a sealed shard's round reads as closed, so a late upload there is refused. A
   * secure round in its input phase gives `secure`: its clients that shared their keys and the inputs' shape.
   */
  descriptor(id: string, round: number, shard: number): ShardDescriptor {
    const fed = this.store.get(id);
    const r = this.store.roundRow(id, round);
    const part = this.part(id, round, shard);
    const { config } = this.store.sql.exec<{ config: string }>("SELECT config FROM federations WHERE id = ?", id).one();
    const shards = fed.config.shards!;
    const secure = r.status === "open" && r.phase === "input" ? this.secureInput(id, round) : undefined;
    return {
      federationId: id,
      config,
      createdAt: fed.createdAt,
      clip: fed.privacy?.clip ?? null,
      round,
      status: part.sealed && r.status === "open" ? "closed" : r.status,
      phase: r.phase,
      baseVersion: r.base_version,
      openedAt: r.opened_at,
      deadline: r.deadline,
      shard,
      clients: (secure?.sharers ?? this.store.sampled(id, round)).filter((c) => shardOf(round, c, shards) === shard),
      quorum: part.quorum,
      ...(secure ? { secure: secure.shape } : {}),
    };
  }

  /**
   * A secure round's input phase: each shard's part becomes its clients that shared their keys, all of whom
   * it waits for (the phase ends when every sharer has sent its input, as in one object).
   */
  replan(id: string, round: number, shards: number, sharers: readonly string[]): void {
    for (let shard = 0; shard < shards; shard++) {
      const quorum = sharers.filter((c) => shardOf(round, c, shards) === shard).length;
      this.store.sql.exec(
        "UPDATE round_shards SET quorum = ?, ready = ? WHERE federation_id = ? AND round = ? AND shard = ?",
        quorum,
        quorum === 0 ? 1 : 0,
        id,
        round,
        shard,
      );
    }
  }

  /** A shard reached its part of the quorum: once every shard has, the round ends and closes. */
  async ready(id: string, round: number, shard: number, end: () => Promise<void>): Promise<Status> {
    this.part(id, round, shard);
    this.store.sql.exec("UPDATE round_shards SET ready = 1 WHERE federation_id = ? AND round = ? AND shard = ?", id, round, shard);
    const r = this.store.roundRow(id, round);
    // A report that arrives after the round's inputs were collected (a secure round past its input phase) ends nothing.
    if (r.status !== "open" || (r.phase !== null && r.phase !== "input")) return r.status;
    const waiting = this.store.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM round_shards WHERE federation_id = ? AND round = ? AND ready = 0", id, round)
      .one().n;
    if (waiting > 0) return "open";
    await end();
    return this.store.roundRow(id, round).status;
  }

  /** The uploads the round's shards hold now (asked of each; the operator's close checks them against minClients). */
  async uploads(id: string, round: number): Promise<number> {
    const counts = await Promise.all(
      this.shards(id, round).map((s) => reaching(id, round, s.shard, this.peers.uploads(id, round, s.shard))),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  /**
   * Seals every shard and merges each partial sum into the round's, then runs `then` (the close, or the
   * fail): one at a time per round. A seal or a read that fails throws; what completed before it stays.
   */
  collect(id: string, round: number, then: () => Promise<void> | void): Promise<void> {
    return this.ending.run(`${id}\n${round}`, async () => {
      for (const s of this.shards(id, round)) if (!s.sealed) await this.seal(id, round, s.shard);
      for (const s of this.shards(id, round))
        for (let c = s.merged; c < s.chunks; c++)
          this.merge(id, round, s.shard, c, await reaching(id, round, s.shard, this.peers.chunk(id, round, s.shard, c)));
      if (this.store.roundRow(id, round).status === "open") await then();
    });
  }

  /** Seals what it can of a round that fails (its uploads are dropped): a shard that cannot answer refuses uploads at the deadline. */
  async sealForFailure(id: string, round: number): Promise<void> {
    for (const s of this.shards(id, round))
      if (!s.sealed)
        await this.peers.seal(id, { ...this.descriptor(id, round, s.shard), status: "failed" }).catch((e: unknown) => {
          console.error(`federation "${id}" round ${round}: shard ${s.shard} was not sealed: ${e instanceof Error ? e.message : e}`);
        });
  }

  /** Deletes what every shard holds of the federation (before the root's own storage goes). */
  async drop(fed: FederationView): Promise<void> {
    if (!isSharded(fed.config)) return;
    for (let shard = 0; shard < fed.config.shards!; shard++)
      await reaching(fed.id, null, shard, this.peers.drop(fed.id, shard, fed.createdAt));
  }

  private async seal(id: string, round: number, shard: number): Promise<void> {
    const s = await reaching(id, round, shard, this.peers.seal(id, this.descriptor(id, round, shard)));
    const { sql } = this.store;
    this.store.storage.transactionSync(() => {
      if (this.part(id, round, shard).sealed) return;
      sql.exec(
        "UPDATE round_shards SET sealed = 1, chunks = ? WHERE federation_id = ? AND round = ? AND shard = ?",
        s.chunks,
        id,
        round,
        shard,
      );
      sql.exec(
        "UPDATE rounds SET uploads = uploads + ?, total_weight = total_weight + ?, within_clip = within_clip + ? " +
          "WHERE federation_id = ? AND round = ?",
        s.uploads,
        s.totalWeight,
        s.withinClip,
        id,
        round,
      );
      for (let i = 0; i < s.receipts.length; i += RECEIPT_ROWS) {
        const part = s.receipts.slice(i, i + RECEIPT_ROWS);
        sql.exec(
          "INSERT INTO receipts (federation_id, round, client_id, idempotency_key, body_sha256, num_examples, metrics, " +
            "received_at, fold_ms, bytes) " +
            `VALUES ${part.map(() => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
          ...part.flatMap((x) => [
            id,
            round,
            x.clientId,
            x.idempotencyKey,
            x.bodySha256,
            x.numExamples,
            x.metrics,
            x.receivedAt,
            x.foldMs,
            x.bytes,
          ]),
        );
      }
    });
  }

  /** Adds chunk `chunk` of a shard's partial sum into the round's sum, once: its progress commits with it. */
  private merge(id: string, round: number, shard: number, chunk: number, bytes: Uint8Array): void {
    const { sql } = this.store;
    this.store.storage.transactionSync(() => {
      // A round failed meanwhile (the operator) keeps no sum; a chunk merged before is not merged again.
      if (this.store.roundRow(id, round).status !== "open" || this.part(id, round, shard).merged !== chunk) return;
      const key = keys.sum(id, round);
      const held = sql.exec<{ data: ArrayBuffer }>("SELECT data FROM blobs WHERE key = ? AND chunk = ?", key, chunk).toArray()[0];
      if (held && held.data.byteLength !== bytes.length)
        throw new AggregatorError(
          "tensor_mismatch",
          `shard ${shard}'s partial sum has ${bytes.length} bytes in chunk ${chunk}, not ${held.data.byteLength}`,
        );
      let sum = bytes;
      // A secure round's sums are of masked words in Z_2^32 (ring-sum.ts); a plain round's of float32.
      if (held && this.store.roundRow(id, round).phase !== null) {
        const words = new Uint32Array(held.data);
        addInto(words, new Uint32Array(bytes.slice().buffer), 1);
        sum = new Uint8Array(words.buffer);
      } else if (held) {
        const floats = new Float32Array(held.data);
        const add = new Float32Array(bytes.slice().buffer);
        checkFold(floats, add, 1, (i) => `element ${(chunk * bytes.length) / 4 + i} of the sum of shard ${shard}`);
        addFold(floats, add, 1);
        sum = new Uint8Array(floats.buffer);
      }
      sql.exec(
        "INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?) ON CONFLICT (key, chunk) DO UPDATE SET data = excluded.data",
        key,
        chunk,
        sum,
      );
      sql.exec("UPDATE round_shards SET merged = ? WHERE federation_id = ? AND round = ? AND shard = ?", chunk + 1, id, round, shard);
    });
  }

  private part(id: string, round: number, shard: number) {
    const row = this.store.sql
      .exec<{ quorum: number; sealed: number; chunks: number; merged: number }>(
        "SELECT quorum, sealed, chunks, merged FROM round_shards WHERE federation_id = ? AND round = ? AND shard = ?",
        id,
        round,
        shard,
      )
      .toArray()[0];
    if (!row) throw new AggregatorError("round_not_found", `"${id}" has no shard ${shard} in round ${round}`);
    return row;
  }

  private shards(id: string, round: number) {
    return this.store.sql
      .exec<{ shard: number; sealed: number; chunks: number; merged: number }>(
        "SELECT shard, sealed, chunks, merged FROM round_shards WHERE federation_id = ? AND round = ? ORDER BY shard",
        id,
        round,
      )
      .toArray();
  }
}

/**
 * A call to a shard, its failure answered as `shard_unavailable` (503): the round stays open with what the other
 * shards sealed (or the federation undeleted), to be tried again.
 */
async function reaching<T>(id: string, round: number | null, shard: number, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (e) {
    const why = `shard ${shard} of "${id}" did not answer (${e instanceof Error ? e.message : String(e)})`;
    throw new AggregatorError(
      "shard_unavailable",
      round === null
        ? `the federation cannot be deleted yet: ${why}; delete it again`
        : `round ${round} of "${id}" cannot end yet: ${why}; the round stays open with what the other shards sealed: ` +
            "close it again (the alarm retries after its deadline), or fail it",
    );
  }
}
