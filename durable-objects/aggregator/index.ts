// The aggregator Durable Object: a thin class over its SQLite storage. The coordinator calls its
// methods over Workers RPC; each answers a Result (errors as data: RPC keeps only an error's message).
import { DurableObject } from "cloudflare:workers";
import { shardObjectName } from "../../src/fl/shards.ts";
import { METRICS_PAGE } from "../../src/protocol/federation.ts";
import { AggregatorError, type AggregatorErrorCode, attempt, attemptAsync, type Result } from "./errors.ts";
import {
  Federations,
  type FederationView,
  type RoundSummary,
  type RoundView,
  type SecAggMessageRequest,
  type SecAggReceipt,
  type SecAggView,
  type UploadReceipt,
  type UploadRequest,
} from "./federation.ts";
import type { SecAggPhaseName } from "../../src/protocol/secure-aggregation.ts";
import { memberFederationView, memberRoundView, type MemberFederationView, type MemberRoundView } from "./member-views.ts";
import { Registry, type RegistryEntry } from "./registry.ts";
import type { ClientProgress } from "./round-progress.ts";
import type { EvaluationReceipt, EvaluationView } from "./evaluations.ts";
import { migrate } from "./schema.ts";
import type { ShardDescriptor, ShardPeers, ShardSeal } from "./sharded-rounds.ts";
import { guardedSql } from "../shared/guarded-sql.ts";

export class Aggregator extends DurableObject<Cloudflare.Env> {
  private readonly schemaVersion: number;
  private readonly federations: Federations;
  private readonly registry: Registry;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    // SQL calls are synchronous and no request is delivered before the constructor returns,
    // so the schema is current before any handler runs.
    this.schemaVersion = migrate(ctx.storage);
    this.federations = new Federations(ctx.storage, shardPeers(env));
    this.registry = new Registry(guardedSql(ctx.storage.sql));
  }

  schema(): number {
    return this.schemaVersion;
  }

  createFederation(config: unknown): Result<FederationView> {
    return attempt(() => this.federations.create(config, Date.now()));
  }

  getFederation(id: string): Result<FederationView> {
    return attempt(() => this.federations.get(id));
  }

  /** What a member client reads of its federation (member-views.ts). */
  getFederationAsMember(id: string, client: string): Result<MemberFederationView> {
    return attempt(() => memberFederationView(this.federations.readBy(id, client), this.federations.evaluations.pending(id, client)));
  }

  async openRound(id: string): Promise<Result<RoundView>> {
    return attemptAsync(() => this.federations.openRound(id, Date.now()));
  }

  async closeRound(id: string, round: number): Promise<Result<RoundView>> {
    return attemptAsync(() => this.federations.closeNow(id, round, Date.now()));
  }

  async failRound(id: string, round: number, reason: string): Promise<Result<RoundView>> {
    return attemptAsync(() => this.federations.failNow(id, round, reason, Date.now()));
  }

  /** Deletes the federation: its object's whole storage and its alarm. */
  async deleteFederation(id: string): Promise<Result<{ deleted: string }>> {
    return attemptAsync(async () => {
      this.federations.get(id);
      // Its shards first: a delete cut off between leaves the root, and a retried delete finishes it.
      await this.federations.dropShards(id);
      await this.wipe(id);
      return { deleted: id };
    });
  }

  /**
   * On a shard object: deletes what it holds of a federation its root is deleting (created at `createdAt`), and
   * remembers the deletion, so an upload already past the root cannot write its part back.
   */
  async dropShard(id: string, createdAt: number): Promise<Result<{ deleted: string }>> {
    return attemptAsync(async () => {
      await this.wipe(id);
      this.ctx.storage.sql.exec(
        "INSERT INTO dropped_federations (federation_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        id,
        createdAt,
      );
      return { deleted: id };
    });
  }

  private async wipe(id: string): Promise<void> {
    this.federations.forget(id);
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    // deleteAll drops the tables too: the object may be named again by a new federation of this id.
    migrate(this.ctx.storage);
  }

  /** Asks the clients to evaluate a version (the operator). */
  requestEvaluation(id: string, version: number): Result<{ federationId: string; version: number; requestedAt: number }> {
    return attempt(() => this.ctx.storage.transactionSync(() => this.federations.evaluations.request(id, version, Date.now())));
  }

  /** A member's report of a version scored on its own held-out split. */
  reportEvaluation(id: string, version: number, client: string, body: Uint8Array): Result<EvaluationReceipt> {
    return attempt(() =>
      this.ctx.storage.transactionSync(() => this.federations.evaluations.report(id, version, client, body, Date.now())),
    );
  }

  /** Every evaluated version's folded reports, oldest first. */
  listEvaluations(id: string): Result<Omit<EvaluationView, "clients">[]> {
    return attempt(() => this.federations.evaluations.list(id));
  }

  /** A version's evaluation: the example-weighted mean of the reports, and each client's. */
  getEvaluation(id: string, version: number): Result<EvaluationView> {
    return attempt(() => this.federations.evaluations.view(id, version));
  }

  /** A sampled client's heartbeat: its steps done of those planned, in an open round. */
  reportProgress(id: string, round: number, client: string, body: Uint8Array): Result<ClientProgress> {
    return attempt(() => this.federations.reportProgress(id, round, client, body, Date.now()));
  }

  async getRound(id: string, round: number): Promise<Result<RoundView>> {
    return attemptAsync(() => this.federations.roundNow(id, round));
  }

  getRoundAsMember(id: string, round: number, client: string): Result<MemberRoundView> {
    return attempt(() => {
      this.federations.readBy(id, client);
      return memberRoundView(this.federations.round(id, round), client);
    });
  }

  getMetrics(id: string, from = 0, limit: number = METRICS_PAGE.rounds): Result<RoundSummary[]> {
    return attempt(() => this.federations.metrics(id, from, Math.min(limit, METRICS_PAGE.rounds)));
  }

  getVersion(id: string, version: number): Result<Uint8Array> {
    return attempt(() => this.federations.version(id, version));
  }

  /**
   * A version as a stream (for serving: no RPC size limit, one chunk in memory at a time). Reads take
   * `client` when a client signed the request: the object checks its membership itself, so a gateway's
   * cached registry entry (members of a deleted federation whose id was reused) admits no one.
   */
  streamVersion(id: string, version: number, client?: string): Result<{ bytes: number; stream: ReadableStream<Uint8Array> }> {
    return attempt(() => {
      this.federations.readBy(id, client);
      return this.federations.versionStream(id, version);
    });
  }

  /** A method's derived read of a version (FedKSeed's per-seed changes since an earlier version, say). */
  getVersionView(id: string, version: number, name: string, query: Record<string, string>, client?: string): Result<Uint8Array> {
    return attempt(() => {
      this.federations.readBy(id, client);
      return this.federations.versionView(id, version, name, query);
    });
  }

  getAdapterConfig(id: string, client?: string): Result<string> {
    return attempt(() => {
      this.federations.readBy(id, client);
      return this.federations.adapterConfig(id);
    });
  }

  supplyInitial(id: string, body: Uint8Array): Result<FederationView> {
    return attempt(() => this.federations.supplyInitial(id, body));
  }

  async upload(request: UploadRequest): Promise<Result<UploadReceipt>> {
    return attemptAsync(() => this.federations.upload(request, Date.now()));
  }

  /** On a federation's root: a shard's part of a round (sharded-rounds.ts). */
  shardRound(id: string, round: number, shard: number): Result<ShardDescriptor> {
    return attempt(() => this.federations.shardDescriptor(id, round, shard));
  }

  /** On a federation's root: a shard reports its part of the quorum; answers the round's status after. */
  async shardReady(id: string, round: number, shard: number): Promise<Result<RoundView["status"]>> {
    return attemptAsync(() => this.federations.shardReady(id, round, shard, Date.now()));
  }

  /** On a shard object: ends its part of a round and says what it holds (shard-replica.ts). */
  sealShard(d: ShardDescriptor): Result<ShardSeal> {
    return attempt(() => this.federations.sealShard(d));
  }

  /** On a shard object: one storage chunk of a sealed round's partial sum. */
  shardChunk(id: string, round: number, chunk: number): Result<Uint8Array> {
    return attempt(() => this.federations.shardChunk(id, round, chunk));
  }

  /** On a shard object: the uploads it has accepted in a round. */
  shardUploads(id: string, round: number): Result<number> {
    return attempt(() => this.federations.shardUploads(id, round));
  }

  /** A sampled client's view of its secure round: the parameters and what the current phase gives it. */
  secAggView(id: string, round: number, client: string): Result<SecAggView> {
    return attempt(() => this.federations.secAggView(id, round, client));
  }

  /** One key-phase message of a secure round (advert, shares or unmask), signed by its client. */
  async secAggMessage(kind: SecAggPhaseName, m: SecAggMessageRequest): Promise<Result<SecAggReceipt>> {
    return attemptAsync(() => this.federations.secAggMessage(kind, m, Date.now()));
  }

  /** On the registry object: remembers a federation (its members and upload cap). */
  register(entry: RegistryEntry): void {
    this.registry.register(entry, Date.now());
  }

  /** On the registry object: a federation's entry, or null when there is none. */
  lookup(id: string): RegistryEntry | null {
    return this.registry.lookup(id);
  }

  unregister(id: string): void {
    this.registry.unregister(id);
  }

  /** On the registry object: every federation id, oldest first. */
  registered(): string[] {
    return this.registry.ids();
  }

  override async alarm(): Promise<void> {
    await this.federations.closeDue(Date.now());
  }
}

/** A result's value, or its refusal thrown again as the aggregator's error (an RPC between objects). */
function unwrap<T>(result: unknown): T {
  const r = result as Result<T>;
  if (!r.ok) throw new AggregatorError(r.error.code as AggregatorErrorCode, r.error.message);
  return r.value;
}

/** The calls between a sharded federation's root object and its shard objects, over Workers RPC. */
function shardPeers(env: Cloudflare.Env): ShardPeers {
  const root = (id: string) => env.AGGREGATOR.getByName(id);
  const shard = (id: string, k: number) => env.AGGREGATOR.getByName(shardObjectName(id, k));
  return {
    seal: async (id, d) => unwrap(await shard(id, d.shard).sealShard(d)),
    chunk: async (id, round, k, chunk) => unwrap(await shard(id, k).shardChunk(id, round, chunk)),
    uploads: async (id, round, k) => unwrap(await shard(id, k).shardUploads(id, round)),
    drop: async (id, k, createdAt) => void unwrap(await shard(id, k).dropShard(id, createdAt)),
    descriptor: async (id, round, k) => unwrap(await root(id).shardRound(id, round, k)),
    version: async (id, version) => unwrap<{ stream: ReadableStream<Uint8Array> }>(await root(id).streamVersion(id, version)).stream,
    ready: async (id, round, k) => unwrap(await root(id).shardReady(id, round, k)),
  };
}
