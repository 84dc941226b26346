// One upload, as named stages (docs/ARCHITECTURE.md, "The upload"): admit (the round, the member,
// replay, the limits) → decode (the method) → validate (the metadata, the method) → transforms (the
// list below, then the strategy's per-update hook) → accumulate (one transaction with the receipt and
// the nonce) → close at quorum (rounds.ts). A refusal at any stage changes nothing.
import { parseLlamaConfig } from "../../src/engine/config.ts";
import { federationStrategy } from "../../src/privacy/federation-privacy.ts";
import { flatLayout, readUpdateHeader, tensorFileSource, UPDATE_METADATA_BYTES } from "../../src/fl/flat-tensors.ts";
import { isSharded } from "../../src/fl/shards.ts";
import type { DecodedUpdate, MethodConfig, ServerMethod } from "../../src/fl/methods/method.ts";
import type { ClientUpdate, UpdateTransform } from "../../src/fl/strategy.ts";
import { parseUploadMetadata, type UploadInfo } from "../../src/protocol/federation.ts";
import { readSafetensorsHeader, safetensorsHeader } from "../../src/protocol/safetensors.ts";
import { readMaskedInput } from "../../src/secagg/masked-update.ts";
import { copySegments } from "./accumulator.ts";
import { RingSum } from "./ring-sum.ts";
import { AggregatorError, refusing } from "./errors.ts";
import { assertFreshNonce, spendNonce } from "./nonces.ts";
import type { Rounds } from "./rounds.ts";
import type { MaskedShape } from "./sharded-rounds.ts";
import { type FederationStore, keys } from "./storage.ts";
import type { FederationView, RoundRow, UploadReceipt, UploadRequest } from "./types.ts";

/**
 * Transforms every upload passes through before the strategy's hook, in order. Empty today: clipping,
 * noise, decompression and unmasking join here.
 */
const TRANSFORMS: readonly UpdateTransform[] = [];

/** What a shard object does where the root would (shard-replica.ts): admit a masked input, and report after an upload. */
export interface ShardHooks {
  /** A secure round's masked input: admitted in the input phase from a client that shared its keys; its shape. */
  maskedInput(fed: FederationView, round: RoundRow, client: string): MaskedShape;
  /** After an accepted upload: the round's status (a shard reports its part of the quorum to the root). */
  afterUpload(fed: FederationView, round: number, uploads: number): Promise<RoundRow["status"]>;
}

type Admitted = { replay: UploadReceipt } | { fed: FederationView; round: RoundRow };

export class Uploads {
  private readonly store: FederationStore;
  private readonly rounds: Rounds;

  constructor(store: FederationStore, rounds: Rounds) {
    this.store = store;
    this.rounds = rounds;
  }

  /**
   * Accepts one client's update for a round, exactly once: a retry of an accepted upload (same idempotency
   * key and body) gets the first answer; anything refused changes nothing.
   */
  async upload(u: UploadRequest, now: number, shard?: ShardHooks): Promise<UploadReceipt> {
    // The object's time on the upload, admission to receipt: what it does for one upload before the next.
    const started = performance.now();
    const admitted = this.admit(u, now);
    if ("replay" in admitted) return admitted.replay;
    const { fed, round } = admitted;
    const info =
      round.phase === null
        ? this.fold(u, fed, round, now, started)
        : this.foldMasked(u, fed, round, now, started, (shard ?? this).maskedInput(fed, round, u.clientId));
    const status = shard
      ? await shard.afterUpload(fed, u.round, round.uploads + 1)
      : await this.rounds.afterUpload(fed, u.round, round.uploads + 1, now);
    return {
      federationId: u.federationId,
      round: u.round,
      clientId: u.clientId,
      numExamples: info.numExamples,
      receivedAt: now,
      replayed: false,
      roundStatus: status,
    };
  }

  /** admit: the federation, the member, a replay of an accepted upload, the round, the sample, the size, the nonce. */
  private admit(u: UploadRequest, now: number): Admitted {
    const fed = this.store.get(u.federationId);
    const round = this.store.roundRow(u.federationId, u.round);
    if (isSharded(fed.config) && u.shard === undefined)
      throw new AggregatorError("misdirected", `"${u.federationId}" folds uploads in its shard objects; the coordinator routes them there`);
    if (!fed.config.clients.includes(u.clientId))
      throw new AggregatorError("client_unknown", `client "${u.clientId}" is not a member of "${u.federationId}"`);
    const prior = this.store.sql
      .exec<{ idempotency_key: string; body_sha256: string; num_examples: number; received_at: number }>(
        "SELECT idempotency_key, body_sha256, num_examples, received_at FROM receipts " +
          "WHERE federation_id = ? AND round = ? AND client_id = ?",
        u.federationId,
        u.round,
        u.clientId,
      )
      .toArray()[0];
    if (prior) {
      if (prior.idempotency_key === u.idempotencyKey && prior.body_sha256 === u.bodySha256)
        return {
          replay: {
            federationId: u.federationId,
            round: u.round,
            clientId: u.clientId,
            numExamples: prior.num_examples,
            receivedAt: prior.received_at,
            replayed: true,
            roundStatus: round.status,
          },
        };
      throw new AggregatorError(
        "upload_conflict",
        `client "${u.clientId}" already uploaded to round ${u.round} with another ` +
          `${prior.idempotency_key === u.idempotencyKey ? "body" : "idempotency key"}; one update per client per round`,
      );
    }
    if (round.status !== "open")
      throw new AggregatorError(
        "round_closed",
        `round ${u.round} of "${u.federationId}" is ${round.status}; the current version is ${fed.version}`,
      );
    if (now > round.deadline)
      throw new AggregatorError(
        "round_closed",
        `round ${u.round} of "${u.federationId}" passed its deadline ${new Date(round.deadline).toISOString()}; it closes with what it has`,
      );
    if (!this.store.isSampled(u.federationId, u.round, u.clientId))
      throw new AggregatorError("client_not_sampled", `client "${u.clientId}" was not sampled for round ${u.round}`);
    if (u.body.length > fed.config.maxUploadBytes)
      throw new AggregatorError(
        "body_too_large",
        `the upload is ${u.body.length} bytes; this federation accepts at most ${fed.config.maxUploadBytes}`,
      );
    assertFreshNonce(this.store.sql, u.clientId, u.nonce);
    return { fed, round };
  }

  /** decode → validate → transforms → accumulate, for a plain round's update. */
  private fold(u: UploadRequest, fed: FederationView, round: RoundRow, now: number, started: number): UploadInfo {
    const method = this.store.method(fed);
    const update = this.decode(method, fed, round, u.body, u.clientId);
    const info = this.validate(method, fed, round, update);
    const strategy = federationStrategy(fed.config, { clip: fed.privacy?.clip });
    const transforms = strategy.processUpdate ? [...TRANSFORMS, strategy.processUpdate.bind(strategy)] : TRANSFORMS;
    this.store.storage.transactionSync(() => {
      const transformed = transforms.reduce<ClientUpdate>((x, t) => t(x), {
        clientId: u.clientId,
        layout: update.layout,
        source: update.source,
        weight: info.numExamples,
      });
      refusing("upload", () => this.rounds.accumulator(u.federationId, round).add(transformed.source, transformed.weight, u.clientId));
      this.record(u, info, transformed, now, performance.now() - started);
    });
    return info;
  }

  /**
   * A secure round's masked input (src/secagg/masked-update.ts): from a client that shared its keys, one U32
   * vector of the round's length, added into the ring sum as it is; the method's checks cannot see through
   * the mask (the clamp to the encoding's range bounds each value instead). Its weight, min(n, maxWeight),
   * is what it carries inside the vector.
   */
  private foldMasked(u: UploadRequest, fed: FederationView, round: RoundRow, now: number, started: number, shape: MaskedShape): UploadInfo {
    const input = refusing("masked input", () => readMaskedInput(u.body, shape.length));
    const info = this.checkMetadata(fed, input.metadata);
    this.store.storage.transactionSync(() => {
      new RingSum(this.store.sql, keys.sum(fed.id, round.round), shape.length).add(input.read, round.uploads === 0);
      this.record(u, info, { weight: Math.min(info.numExamples, shape.maxWeight) }, now, performance.now() - started);
    });
    return info;
  }

  /** The root's admission of a masked input (secure-rounds.ts): a client that shared its keys, in the input phase. */
  maskedInput(fed: FederationView, round: RoundRow, client: string): MaskedShape {
    this.rounds.secure.admitInput(fed.id, round, client);
    const { round: params, enc } = this.rounds.secure.params(fed, round);
    return { length: params.length, maxWeight: enc.maxWeight };
  }

  /**
   * decode: the method reads the body against the base version's layout (from its header), a segment at a
   * time; where uploads differ per client (perClient), against the client's layout, then lifted into the version's.
   */
  private decode(
    method: { side: ServerMethod<MethodConfig>; config: MethodConfig },
    fed: FederationView,
    round: RoundRow,
    body: Uint8Array,
    client: string,
  ) {
    const header = this.store.versionHeader(fed.id, round.base_version);
    const layout = flatLayout(header);
    return refusing("upload", (): DecodedUpdate => {
      if (method.side.decode) return method.side.decode(method.config, body, layout, header.dataStart);
      const per = method.side.perClient?.(method.config) ?? null;
      const sent = per && readUpdateHeader(body, header.dataStart + UPDATE_METADATA_BYTES).tensors;
      const own = per ? per.layout(client, layout, (name) => sent!.get(name)?.shape) : layout;
      const read = tensorFileSource(body, own, header.dataStart, "upload", method.side.frozen?.(method.config) ?? null);
      if (!per) return { layout, ...read };
      const version = this.store.versionSource(fed.id, round.base_version, header);
      return { layout, metadata: read.metadata, source: per.lift(client, read.source, own, layout, version) };
    });
  }

  /** validate: the metadata within the federation's limits, then the method's own checks against the base version. */
  private validate(
    method: { side: ServerMethod<MethodConfig>; config: MethodConfig },
    fed: FederationView,
    round: RoundRow,
    update: DecodedUpdate,
  ): UploadInfo {
    const info = this.checkMetadata(fed, update.metadata);
    const check = method.side.validate;
    if (check) refusing("upload", () => check(method.config, update, () => this.store.versionTensors(fed.id, round.base_version)));
    return info;
  }

  /** The upload's metadata, its example count within the federation's cap. */
  private checkMetadata(fed: FederationView, metadata: Record<string, string>): UploadInfo {
    const info = refusing("upload __metadata__", () => parseUploadMetadata(metadata));
    if (info.numExamples > fed.config.maxExamplesPerClient)
      throw new AggregatorError(
        "metadata_invalid",
        `upload __metadata__: num_examples ${info.numExamples} is over this federation's maxExamplesPerClient ` +
          `(${fed.config.maxExamplesPerClient})`,
      );
    return info;
  }

  /** accumulate's bookkeeping, in the same transaction: the receipt, the nonce, the round's counts. */
  private record(
    u: UploadRequest,
    info: UploadInfo,
    folded: Pick<ClientUpdate, "weight" | "withinClip">,
    now: number,
    foldMs: number,
  ): void {
    const { sql } = this.store;
    sql.exec(
      "INSERT INTO receipts (federation_id, round, client_id, idempotency_key, body_sha256, num_examples, metrics, received_at, fold_ms, " +
        "bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      u.federationId,
      u.round,
      u.clientId,
      u.idempotencyKey,
      u.bodySha256,
      info.numExamples,
      JSON.stringify(info.metrics),
      now,
      foldMs,
      u.body.length,
    );
    spendNonce(sql, u.clientId, u.nonce, now);
    sql.exec(
      "UPDATE rounds SET uploads = uploads + 1, total_weight = total_weight + ?, within_clip = within_clip + ? " +
        "WHERE federation_id = ? AND round = ?",
      folded.weight,
      folded.withinClip ? 1 : 0,
      u.federationId,
      u.round,
    );
  }

  /**
   * A version 0 the operator supplies (offsite-tuning's owner adapter: its bottom and top layers,
   * full-model names and shapes), accepted once, before the first round; converted to float32 in the
   * layout the aggregator writes and checked a segment at a time.
   */
  supplyInitial(id: string, body: Uint8Array): void {
    const fed = this.store.get(id);
    const method = this.store.method(fed);
    const shapesOf = method.side.suppliedShapes;
    if (!shapesOf)
      throw new AggregatorError("initial_not_needed", `"${id}" makes its version 0 at creation (method "${fed.config.method.type}")`);
    if (this.store.hasVersion(id, 0))
      throw new AggregatorError("initial_exists", `"${id}" already has its initial adapter; versions are immutable`);
    if (body.length > fed.config.maxUploadBytes)
      throw new AggregatorError(
        "body_too_large",
        `the initial adapter is ${body.length} bytes; this federation accepts at most ${fed.config.maxUploadBytes}`,
      );
    const shapes = shapesOf(method.config, parseLlamaConfig(fed.config.model.config));
    const { header } = safetensorsHeader([...shapes].map(([name, shape]) => [name, { dtype: "F32", shape }] as const));
    const layout = flatLayout(readSafetensorsHeader(header));
    const { source } = refusing("initial adapter", () => tensorFileSource(body, layout, header.length, "initial adapter"));
    this.store.storage.transactionSync(() =>
      refusing("initial adapter", () => copySegments(this.store.sql, keys.version(id, 0), header, layout, source)),
    );
  }
}
