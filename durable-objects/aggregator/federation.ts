// A federation's rounds in the aggregator's SQLite storage (docs/ARCHITECTURE.md, "The round"): open a
// round, accept each sampled client's delta exactly once and fold it into a running weighted sum kept in
// storage, close at quorum or at the deadline with at least the minimum. Every change is one
// transactionSync, so a restart at any point loses nothing that was acknowledged.
import { shuffled } from "../../src/data/lm-windows.ts";
import { assertModelBounds, parseLlamaConfig, type LlamaConfig } from "../../src/engine/config.ts";
import { FedflareError } from "../../src/errors.ts";
import { expectedTensors, linearShape, type LinearModule } from "../../src/engine/llama/names.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { loraPairs, loraScaling, writePeftAdapter } from "../../src/engine/lora/peft.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { FlError } from "../../src/fl/errors.ts";
import { describeOffsite } from "../../src/fl/offsite/description.ts";
import { adapterShapes, offsiteLayout, type OffsiteLayout } from "../../src/fl/offsite/emulator.ts";
import { decodeSeedSums, denseSeedSums, encodeSeedSums, seedDiff } from "../../src/fl/zo/seed-sums.ts";
import { BPT_MEAN, BPT_SIGMA2, PROBS, SEED_SUMS } from "../../src/fl/version-tensors.ts";
import { arraySource, flatLayout, tensorFileSource, UPDATE_METADATA_BYTES } from "../../src/fl/flat-tensors.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { weightedMetricMean } from "../../src/fl/weighted-mean.ts";
import {
  labelWordsOf,
  METRICS_LIMITS,
  parseFederationConfig,
  parseUploadMetadata,
  type FederationConfig,
  type OffsiteMethod,
} from "../../src/protocol/federation.ts";
import { readSafetensorsHeader, SafetensorsError, safetensorsHeader, type SafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { MAX_ADAPTER_BYTES } from "../../src/protocol/platform-limits.ts";
import { closeSegments, copySegments, foldSegments } from "./accumulator.ts";
import { deleteBlob, readBlob, readBlobRange, writeBlob } from "../shared/blobs.ts";
import { guardedSql } from "../shared/guarded-sql.ts";
import { AggregatorError } from "./errors.ts";

export interface FederationView {
  id: string;
  config: FederationConfig;
  version: number;
  createdAt: number;
  roundsDone: number;
  /** The round clients should train now, if one is open. */
  openRound: number | null;
}

export interface RoundSummary {
  round: number;
  status: RoundView["status"];
  openedAt: number;
  closedAt: number | null;
  uploads: number;
  totalWeight: number;
  result: RoundView["result"];
}

export interface RoundResult {
  version: number;
  uploads: number;
  totalWeight: number;
  metrics: Record<string, number>;
}

export interface RoundView {
  federationId: string;
  round: number;
  status: "open" | "closed" | "failed";
  baseVersion: number;
  sampled: string[];
  openedAt: number;
  deadline: number;
  uploads: number;
  totalWeight: number;
  closedAt: number | null;
  result: RoundResult | { reason: string } | null;
  /** Accepted uploads, in order: who, when, how many examples, and the fold's time in the DO. */
  receipts: { clientId: string; receivedAt: number; numExamples: number; foldMs: number }[];
  /** What every sampled client trains with this round. */
  /** `seed`: the federation's (LoRA's initialisation, FedKSeed's seed pool). */
  task: {
    proximalMu: number;
    local: FederationConfig["local"];
    method: FederationConfig["method"];
    model: { name: string; quant: string };
    seed: number;
  };
}

export interface UploadRequest {
  federationId: string;
  round: number;
  clientId: string;
  idempotencyKey: string;
  /** Hex SHA-256 of the body (computed by the caller, which already hashed it for the signature). */
  bodySha256: string;
  nonce: string;
  body: Uint8Array;
}

export interface UploadReceipt {
  federationId: string;
  round: number;
  clientId: string;
  numExamples: number;
  receivedAt: number;
  /** True when this answer repeats the one given to an earlier identical upload. */
  replayed: boolean;
  roundStatus: RoundView["status"];
}

type RoundRow = {
  round: number;
  status: RoundView["status"];
  base_version: number;
  sampled: string;
  opened_at: number;
  deadline: number;
  uploads: number;
  total_weight: number;
  closed_at: number | null;
  result: string | null;
};

/**
 * Runs `fn`, answering a refusal of the wire formats, the tensors or the metadata as the aggregator's
 * error (status and code) that names `what`.
 */
function refusing<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SafetensorsError && e.code === "header_too_large")
      throw new AggregatorError(
        "header_too_large",
        `${what}: ${e.message}: a header holds its tensors' entries and at most ${UPDATE_METADATA_BYTES} bytes of metadata (metrics of at most ${METRICS_LIMITS.jsonBytes} characters)`,
      );
    if (e instanceof SafetensorsError) throw new AggregatorError("safetensors_invalid", `${what}: ${e.message} (${e.code})`);
    if (e instanceof FlError) throw new AggregatorError(e.code === "non_finite" ? "non_finite" : "tensor_mismatch", e.message);
    if (e instanceof FedflareError && e.code === "metadata_invalid") throw new AggregatorError("metadata_invalid", e.message);
    throw e;
  }
}

/** A round's result keeps this many metrics at most, so its row stays small whatever names clients report. */
const ROUND_METRICS = 32;

/** The example-weighted mean of the metrics the most clients report (ties by name), ROUND_METRICS of them at most. */
function roundMetrics(results: { numExamples: number; metrics: Record<string, number> }[]): Record<string, number> {
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

/** The black-box methods' versions move by the plain weighted mean of the clients' changes: no server optimizer. */
function requireFedAvg(config: FederationConfig, why: string): void {
  if (config.strategy.name !== "fedavg")
    throw new AggregatorError("config_invalid", `${why}: use strategy "fedavg", not "${config.strategy.name}"`);
}

const versionKey = (fed: string, v: number) => `version/${fed}/${v}`;
const sumKey = (fed: string, round: number) => `sum/${fed}/${round}`;
/** A strategy's slot (momentum, moments): a flat float32 vector in the versions' data order. */
const stateKey = (fed: string, slot: string) => `state/${fed}/${slot}`;
const adapterConfigKey = (fed: string) => `adapter-config/${fed}`;
/** Nonces are kept as long as a signed request stays acceptable, and a little more. */
const NONCE_TTL_MS = 15 * 60 * 1000;

export class Federations {
  private readonly storage: DurableObjectStorage;
  private readonly sql: SqlStorage;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
    this.sql = guardedSql(storage.sql);
  }

  create(json: unknown, now: number): FederationView {
    let config: FederationConfig;
    try {
      config = parseFederationConfig(json);
      // Validates the strategy's options now, not at the first close.
      createStrategy(config.strategy);
    } catch (e) {
      if (e instanceof FedflareError) throw new AggregatorError("config_invalid", e.message);
      throw e;
    }
    if (this.row(config.id)) throw new AggregatorError("federation_exists", `federation "${config.id}" already exists`);
    let model: LlamaConfig;
    try {
      model = parseLlamaConfig(config.model.config);
      assertModelBounds(model);
    } catch (e) {
      if (e instanceof FedflareError) throw new AggregatorError("config_invalid", `model.config: ${e.message}`);
      throw e;
    }
    this.checkVersionSize(config, model);
    const initial = this.initialVersion(config, model);
    this.storage.transactionSync(() => {
      this.sql.exec(
        "INSERT INTO federations (id, config, created_at, version) VALUES (?, ?, ?, 0)",
        config.id,
        JSON.stringify(config),
        now,
      );
      if (initial.tensors) writeBlob(this.sql, versionKey(config.id, 0), initial.tensors);
      writeBlob(this.sql, adapterConfigKey(config.id), new TextEncoder().encode(initial.config));
    });
    return this.get(config.id);
  }

  /**
   * Version 0 and the description of what the versions hold. LoRA: PEFT's initialisation (B = 0, so the
   * global model starts as the base model) and its adapter_config.json. Offsite-tuning: the owner's
   * adapter tensors, which only the operator has, so version 0 comes later (supplyInitial).
   */
  private initialVersion(config: FederationConfig, model: LlamaConfig): { tensors: Uint8Array | null; config: string } {
    const m = config.method;
    if (m.type === "offsite") {
      const layout = this.offsite(m, model);
      return { tensors: null, config: `${JSON.stringify(describeOffsite(config.model.name, m, layout), null, 2)}\n` };
    }
    if (m.type === "fedkseed") {
      // Version 0: no seed has moved yet; w0 is PEFT's initialisation or the base tensors, made by each client.
      requireFedAvg(config, "FedKSeed averages the clients' per-seed scalars");
      if (m.trains.type === "full") {
        const known = expectedTensors(model);
        for (const name of m.trains.tensors)
          if (!known.has(name))
            throw new AggregatorError("config_invalid", `method.trains.tensors: "${name}" is not a tensor of this model`);
      }
      return {
        tensors: encodeTensorFile(new Map([[SEED_SUMS, new Float32Array(m.k)]]), new Map([[SEED_SUMS, [m.k]]])),
        config: `${JSON.stringify(
          {
            method: "fedkseed",
            base_model: config.model.name,
            k: m.k,
            epsilon: m.epsilon,
            lr: config.local.lr,
            direction: m.direction,
            pro: m.pro,
            trains: m.trains,
            seed: config.seed,
          },
          null,
          2,
        )}\n`,
      };
    }
    if (m.type === "fedbpt") {
      // Version 0: z = 0 (the prompt p0) and the initial step size; versions move by the clients' averaged changes.
      requireFedAvg(config, "FedBPT recombines the clients' means");
      const tensors = new Map([
        [BPT_MEAN, new Float32Array(m.dimension)],
        [BPT_SIGMA2, Float32Array.of(m.sigma ** 2)],
      ]);
      return {
        tensors: encodeTensorFile(
          tensors,
          new Map([
            [BPT_MEAN, [m.dimension]],
            [BPT_SIGMA2, [1]],
          ]),
        ),
        config: `${JSON.stringify(
          {
            method: "fedbpt",
            base_model: config.model.name,
            prompt_tokens: m.promptTokens,
            dimension: m.dimension,
            labels: m.labels,
            label_words: labelWordsOf(m),
            seed: config.seed,
          },
          null,
          2,
        )}\n`,
      };
    }
    if (m.type === "discrete") {
      // Version 0: every slot uniform over the phrases; versions move by the clients' averaged changes.
      requireFedAvg(config, "discrete prompts average the clients' distributions");
      const shape = [m.slots, m.phrases.length];
      const tensors = new Map([[PROBS, new Float32Array(m.slots * m.phrases.length).fill(1 / m.phrases.length)]]);
      return {
        tensors: encodeTensorFile(tensors, new Map([[PROBS, shape]])),
        config: `${JSON.stringify(
          {
            method: "discrete",
            base_model: config.model.name,
            slots: m.slots,
            phrases: m.phrases,
            labels: m.labels,
            label_words: labelWordsOf(m),
            seed: config.seed,
          },
          null,
          2,
        )}\n`,
      };
    }
    if (m.fromLayer >= model.numLayers)
      throw new AggregatorError("config_invalid", `method.fromLayer ${m.fromLayer} leaves no layer of the ${model.numLayers} with LoRA`);
    const params = initLoraParams(model, m.r, m.targetModules as LinearModule[], config.seed, m.fromLayer);
    const pairs = loraPairs(params, m.r, loraScaling({ r: m.r, alpha: m.alpha, useRslora: m.rslora }));
    const layers = m.fromLayer > 0 ? Array.from({ length: model.numLayers - m.fromLayer }, (_, i) => m.fromLayer + i) : null;
    const files = writePeftAdapter({
      config: {
        r: m.r,
        alpha: m.alpha,
        targetModules: m.targetModules as LinearModule[],
        dropout: m.dropout,
        useRslora: m.rslora,
        baseModel: config.model.name,
        layers,
      },
      pairs,
    });
    return { tensors: files["adapter_model.safetensors"], config: files["adapter_config.json"] };
  }

  /**
   * Refuses, before anything is allocated, a federation whose versions could not live inside the
   * platform's limits (platform-limits.ts): an upload of the adapter crosses one RPC call, under its
   * maxUploadBytes.
   */
  private checkVersionSize(config: FederationConfig, model: LlamaConfig): void {
    const m = config.method;
    let floats: number;
    if (m.type === "lora") {
      const layers = Math.max(0, model.numLayers - m.fromLayer);
      floats = layers * m.targetModules.reduce((n, t) => n + m.r * linearShape(model, t as LinearModule).reduce((a, b) => a + b, 0), 0);
    } else if (m.type === "offsite")
      floats = [...adapterShapes(model, this.offsite(m, model)).values()].reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
    else if (m.type === "fedkseed") floats = m.k;
    else if (m.type === "fedbpt") floats = m.dimension + 1;
    else floats = m.slots * m.phrases.length;
    const bytes = floats * 4;
    const largest = Math.min(MAX_ADAPTER_BYTES, config.maxUploadBytes);
    if (bytes > largest)
      throw new AggregatorError(
        "config_invalid",
        `the adapter would be ${bytes} bytes (${floats} float32 values); a federation's adapter may be at most ${largest} bytes (${largest === MAX_ADAPTER_BYTES ? "what an upload carries through one Durable Object RPC call of 32 MiB" : "its maxUploadBytes"}): use a smaller rank, fewer target modules or layers`,
      );
  }

  private offsite(m: OffsiteMethod, model: LlamaConfig): OffsiteLayout {
    try {
      const layout = offsiteLayout(model.numLayers, m);
      if (layout.adapter.length === 0)
        throw new FlError("strategy_invalid", "offsite split: the adapter needs at least one bottom or top layer");
      return layout;
    } catch (e) {
      if (e instanceof FlError) throw new AggregatorError("config_invalid", `method: ${e.message}`);
      throw e;
    }
  }

  /**
   * An offsite-tuning federation's version 0: the model owner's adapter tensors (its bottom and top layers,
   * full-model names and shapes), accepted once, before the first round.
   */
  supplyInitial(id: string, body: Uint8Array): FederationView {
    const fed = this.get(id);
    const m = fed.config.method;
    if (m.type !== "offsite")
      throw new AggregatorError(
        "initial_not_needed",
        `"${id}" is a LoRA federation: its version 0 is PEFT's initialisation, made at creation`,
      );
    if (readBlob(this.sql, versionKey(id, 0)))
      throw new AggregatorError("initial_exists", `"${id}" already has its initial adapter; versions are immutable`);
    if (body.length > fed.config.maxUploadBytes)
      throw new AggregatorError(
        "body_too_large",
        `the initial adapter is ${body.length} bytes; this federation accepts at most ${fed.config.maxUploadBytes}`,
      );
    const model = parseLlamaConfig(fed.config.model.config);
    const shapes = adapterShapes(model, this.offsite(m, model));
    // Version 0 as float32 in the layout the aggregator writes, converted and checked a segment at a time.
    const { header } = safetensorsHeader([...shapes].map(([name, shape]) => [name, { dtype: "F32", shape }] as const));
    const layout = flatLayout(readSafetensorsHeader(header));
    const { source } = refusing("initial adapter", () => tensorFileSource(body, layout, header.length, "initial adapter"));
    this.storage.transactionSync(() =>
      refusing("initial adapter", () => copySegments(this.sql, versionKey(id, 0), header, layout, source)),
    );
    return this.get(id);
  }

  get(id: string): FederationView {
    const r = this.row(id);
    if (!r) throw new AggregatorError("federation_not_found", `no federation "${id}"`);
    const roundsDone = this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM rounds WHERE federation_id = ? AND status = 'closed'", id)
      .one().n;
    const open = this.sql.exec<{ round: number }>("SELECT round FROM rounds WHERE federation_id = ? AND status = 'open'", id).toArray()[0];
    return {
      id,
      config: JSON.parse(r.config) as FederationConfig,
      version: r.version,
      createdAt: r.created_at,
      roundsDone,
      openRound: open?.round ?? null,
    };
  }

  /** The federation, for a reader: a client (when given) must be one of its members. */
  readBy(id: string, client?: string): FederationView {
    const fed = this.get(id);
    if (client !== undefined && !fed.config.clients.includes(client))
      throw new AggregatorError("client_unknown", `client "${client}" is not a member of "${id}"`);
    return fed;
  }

  private row(id: string) {
    return this.sql
      .exec<{ config: string; version: number; created_at: number }>("SELECT config, version, created_at FROM federations WHERE id = ?", id)
      .toArray()[0];
  }

  /** Opens the next round: samples its clients (seeded) and arms the deadline alarm. */
  async openRound(id: string, now: number): Promise<RoundView> {
    const fed = this.get(id);
    if (fed.openRound !== null)
      throw new AggregatorError("round_open", `round ${fed.openRound} of "${id}" is still open; wait for it to close (quorum or deadline)`);
    if (fed.roundsDone >= fed.config.rounds)
      throw new AggregatorError("federation_finished", `"${id}" has completed its ${fed.config.rounds} rounds`);
    if (fed.version === 0 && !readBlob(this.sql, versionKey(id, 0)))
      throw new AggregatorError(
        "initial_missing",
        `"${id}" is an offsite-tuning federation without its initial adapter: the operator supplies version 0 first (PUT /federations/${id}/versions/0 with the operator's token; npx fedflare offsite emulator writes it)`,
      );
    const round = (this.sql.exec<{ n: number | null }>("SELECT MAX(round) AS n FROM rounds WHERE federation_id = ?", id).one().n ?? 0) + 1;
    const sampled = shuffled(fed.config.clients, seededUniform(fed.config.seed * 100_003 + round))
      .slice(0, fed.config.clientsPerRound)
      .sort();
    const deadline = now + fed.config.deadlineSeconds * 1000;
    this.sql.exec(
      "INSERT INTO rounds (federation_id, round, status, base_version, sampled, opened_at, deadline) VALUES (?, ?, 'open', ?, ?, ?, ?)",
      id,
      round,
      fed.version,
      JSON.stringify(sampled),
      now,
      deadline,
    );
    await this.armAlarm();
    return this.round(id, round);
  }

  round(id: string, round: number): RoundView {
    return this.roundOf(this.get(id), round);
  }

  private roundOf(fed: FederationView, round: number): RoundView {
    const id = fed.id;
    const r = this.sql.exec<RoundRow>("SELECT * FROM rounds WHERE federation_id = ? AND round = ?", id, round).toArray()[0];
    if (!r) throw new AggregatorError("round_not_found", `"${id}" has no round ${round}`);
    const { local, method, model } = fed.config;
    return {
      federationId: id,
      round,
      status: r.status,
      baseVersion: r.base_version,
      sampled: JSON.parse(r.sampled) as string[],
      openedAt: r.opened_at,
      deadline: r.deadline,
      uploads: r.uploads,
      totalWeight: r.total_weight,
      closedAt: r.closed_at,
      result: r.result ? (JSON.parse(r.result) as RoundResult) : null,
      receipts: this.sql
        .exec<{ client_id: string; received_at: number; num_examples: number; fold_ms: number }>(
          "SELECT client_id, received_at, num_examples, fold_ms FROM receipts WHERE federation_id = ? AND round = ? ORDER BY received_at, client_id",
          id,
          round,
        )
        .toArray()
        .map((x) => ({ clientId: x.client_id, receivedAt: x.received_at, numExamples: x.num_examples, foldMs: x.fold_ms })),
      task: {
        proximalMu: createStrategy(fed.config.strategy).configureTrain(round).proximalMu,
        local,
        method,
        model: { name: model.name, quant: model.quant },
        seed: fed.config.seed,
      },
    };
  }

  /** Every round so far with its outcome and aggregated client metrics, oldest first. */
  metrics(id: string): RoundSummary[] {
    this.get(id);
    return this.sql
      .exec<RoundRow>("SELECT * FROM rounds WHERE federation_id = ? ORDER BY round", id)
      .toArray()
      .map((r) => ({
        round: r.round,
        status: r.status,
        openedAt: r.opened_at,
        closedAt: r.closed_at,
        uploads: r.uploads,
        totalWeight: r.total_weight,
        result: r.result ? (JSON.parse(r.result) as RoundView["result"]) : null,
      }));
  }

  /** The global adapter's safetensors bytes at a version (PEFT key names, or the offsite adapter's full-model names). */
  version(id: string, version: number): Uint8Array {
    this.get(id);
    const bytes = readBlob(this.sql, versionKey(id, version));
    if (!bytes) throw new AggregatorError("version_not_found", `"${id}" has no adapter version ${version}`);
    return bytes;
  }

  /**
   * A version as a stream of its storage chunks, read one at a time as the reader pulls: what the
   * coordinator serves, holding one chunk however large the version (a stream is not bound by the RPC
   * limit on a serialized value). Versions are immutable; one pruned mid-stream ends it with an error.
   */
  versionStream(id: string, version: number): { bytes: number; stream: ReadableStream<Uint8Array> } {
    this.get(id);
    const key = versionKey(id, version);
    const { chunks, bytes } = this.sql
      .exec<{ chunks: number; bytes: number | null }>("SELECT COUNT(*) AS chunks, SUM(LENGTH(data)) AS bytes FROM blobs WHERE key = ?", key)
      .one();
    if (chunks === 0) throw new AggregatorError("version_not_found", `"${id}" has no adapter version ${version}`);
    let chunk = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull: (controller) => {
        const row = this.sql.exec<{ data: ArrayBuffer }>("SELECT data FROM blobs WHERE key = ? AND chunk = ?", key, chunk++).toArray()[0];
        if (!row) return controller.error(new Error(`version ${version} of "${id}" was pruned while it was read`));
        controller.enqueue(new Uint8Array(row.data));
        if (chunk === chunks) controller.close();
      },
    });
    return { bytes: bytes ?? 0, stream };
  }

  adapterConfig(id: string): string {
    this.get(id);
    return new TextDecoder().decode(readBlob(this.sql, adapterConfigKey(id))!);
  }

  /**
   * Accepts one client's delta for a round, exactly once: a retry of an accepted upload (same idempotency
   * key and body) gets the first answer; anything refused changes nothing.
   */
  async upload(u: UploadRequest, now: number): Promise<UploadReceipt> {
    const fed = this.get(u.federationId);
    const round = this.roundOf(fed, u.round);
    if (!fed.config.clients.includes(u.clientId))
      throw new AggregatorError("client_unknown", `client "${u.clientId}" is not a member of "${u.federationId}"`);
    const prior = this.sql
      .exec<{ idempotency_key: string; body_sha256: string; num_examples: number; received_at: number }>(
        "SELECT idempotency_key, body_sha256, num_examples, received_at FROM receipts WHERE federation_id = ? AND round = ? AND client_id = ?",
        u.federationId,
        u.round,
        u.clientId,
      )
      .toArray()[0];
    if (prior) {
      if (prior.idempotency_key === u.idempotencyKey && prior.body_sha256 === u.bodySha256)
        return {
          federationId: u.federationId,
          round: u.round,
          clientId: u.clientId,
          numExamples: prior.num_examples,
          receivedAt: prior.received_at,
          replayed: true,
          roundStatus: round.status,
        };
      throw new AggregatorError(
        "upload_conflict",
        `client "${u.clientId}" already uploaded to round ${u.round} with another ${prior.idempotency_key === u.idempotencyKey ? "body" : "idempotency key"}; one update per client per round`,
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
    if (!round.sampled.includes(u.clientId))
      throw new AggregatorError("client_not_sampled", `client "${u.clientId}" was not sampled for round ${u.round}`);
    if (u.body.length > fed.config.maxUploadBytes)
      throw new AggregatorError(
        "body_too_large",
        `the upload is ${u.body.length} bytes; this federation accepts at most ${fed.config.maxUploadBytes}`,
      );
    if (this.sql.exec("SELECT 1 FROM nonces WHERE client_id = ? AND nonce = ?", u.clientId, u.nonce).toArray().length)
      throw new AggregatorError("nonce_reused", `nonce ${u.nonce} was already used by "${u.clientId}": sign each request anew`);

    // The global version's layout, from its header: the update is read against it a segment at a time.
    const globalHeader = this.versionHeader(u.federationId, round.baseVersion);
    const layout = flatLayout(globalHeader);
    const m = fed.config.method;
    const update = refusing("upload", () =>
      m.type === "fedkseed" ? this.seedSource(u.body, m.k) : tensorFileSource(u.body, layout, globalHeader.dataStart, "upload"),
    );
    if (m.type === "discrete" || m.type === "fedbpt")
      this.checkPoint(
        m.type,
        u.federationId,
        round.baseVersion,
        refusing("upload", () => decodeTensorFile(u.body, "upload").tensors),
      );
    const info = refusing("upload __metadata__", () => parseUploadMetadata(update.metadata));
    if (info.numExamples > fed.config.maxExamplesPerClient)
      throw new AggregatorError(
        "metadata_invalid",
        `upload __metadata__: num_examples ${info.numExamples} is over this federation's maxExamplesPerClient (${fed.config.maxExamplesPerClient})`,
      );

    const started = performance.now();
    const quorum = fed.config.quorum ?? fed.config.clientsPerRound;
    this.storage.transactionSync(() => {
      refusing("upload", () =>
        foldSegments(this.sql, sumKey(u.federationId, u.round), layout, update.source, info.numExamples, round.uploads === 0),
      );
      this.sql.exec(
        "INSERT INTO receipts (federation_id, round, client_id, idempotency_key, body_sha256, num_examples, metrics, received_at, fold_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        u.federationId,
        u.round,
        u.clientId,
        u.idempotencyKey,
        u.bodySha256,
        info.numExamples,
        JSON.stringify(info.metrics),
        now,
        performance.now() - started,
      );
      this.sql.exec("INSERT INTO nonces (client_id, nonce, expires_at) VALUES (?, ?, ?)", u.clientId, u.nonce, now + NONCE_TTL_MS);
      this.sql.exec("DELETE FROM nonces WHERE expires_at < ?", now);
      this.sql.exec(
        "UPDATE rounds SET uploads = uploads + 1, total_weight = total_weight + ? WHERE federation_id = ? AND round = ?",
        info.numExamples,
        u.federationId,
        u.round,
      );
    });
    let status: RoundView["status"] = "open";
    if (round.uploads + 1 >= quorum) {
      status = this.finish(u.federationId, u.round, now, "close");
      await this.armAlarm();
    }
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

  /**
   * Prompt methods upload a change of a point that has to stay valid: a discrete client's distributions
   * (global + change) must be probability distributions, a FedBPT client's squared step size positive.
   * Refused here, before the fold, so one bad update cannot corrupt the version.
   */
  private checkPoint(method: "discrete" | "fedbpt", id: string, baseVersion: number, change: ReadonlyMap<string, Float32Array>): void {
    const global = decodeTensorFile(this.version(id, baseVersion), `version ${baseVersion}`);
    if (method === "fedbpt") {
      const sigma2 = global.tensors.get(BPT_SIGMA2)![0]! + change.get(BPT_SIGMA2)![0]!;
      if (!(sigma2 > 0))
        throw new AggregatorError(
          "update_invalid",
          `the upload's step size is not positive: sigma2 = ${sigma2} (the global ${global.tensors.get(BPT_SIGMA2)![0]} plus the change)`,
        );
      return;
    }
    const [slots, n] = global.shapes.get(PROBS)!;
    const g = global.tensors.get(PROBS)!;
    const d = change.get(PROBS)!;
    for (let s = 0; s < slots!; s++) {
      let sum = 0;
      for (let k = s * n!; k < (s + 1) * n!; k++) {
        const p = g[k]! + d[k]!;
        if (p < -1e-4)
          throw new AggregatorError(
            "update_invalid",
            `slot ${s} of the upload's distributions gives phrase ${k - s * n!} the probability ${p}: the global distributions plus the change must be probabilities`,
          );
        sum += p;
      }
      if (Math.abs(sum - 1) > 1e-3)
        throw new AggregatorError(
          "update_invalid",
          `slot ${s} of the upload's distributions sums to ${sum}, not 1: the global distributions plus the change must be probabilities`,
        );
    }
  }

  /** A FedKSeed upload (sparse per-seed sums) as the dense delta of the cumulative per-seed vector. */
  private seedSource(body: Uint8Array, k: number) {
    const { sums, metadata } = decodeSeedSums(body, k, "upload");
    return { source: arraySource(denseSeedSums(sums, k)), metadata };
  }

  /** A version's safetensors header, read from its first chunks without its values. */
  private versionHeader(id: string, version: number): SafetensorsHeader {
    const key = versionKey(id, version);
    const n = Number(new DataView(readBlobRange(this.sql, key, 0, 8).buffer).getBigUint64(0, true));
    return readSafetensorsHeader(readBlobRange(this.sql, key, 0, 8 + n));
  }

  /** A FedKSeed federation's per-seed change from version `since` to `version`, sparse: what a client that holds `since` needs. */
  seedDiff(id: string, version: number, since: number): Uint8Array {
    const fed = this.get(id);
    if (fed.config.method.type !== "fedkseed")
      throw new AggregatorError("version_not_found", `"${id}" is not a FedKSeed federation: its versions are tensors, not seed sums`);
    if (since > version) throw new AggregatorError("version_not_found", `since (${since}) must not be after the version (${version})`);
    const sums = (v: number) => decodeTensorFile(this.version(id, v), `version ${v}`).tensors.get(SEED_SUMS)!;
    return encodeSeedSums(seedDiff(sums(since), sums(version)), { format: "pt", since: String(since), version: String(version) });
  }

  /**
   * Ends an open round in its own transaction: "close" applies the strategy (a close that throws marks
   * the round failed with the error as its reason, so no round stays open forever), "fail" drops the
   * round's sum. Returns the round's status after.
   */
  private finish(id: string, round: number, now: number, action: "close" | "fail", reason = ""): "closed" | "failed" {
    if (action === "close") {
      try {
        this.storage.transactionSync(() => this.close(id, round, now));
        return "closed";
      } catch (e) {
        reason = `closing failed: ${e instanceof Error ? e.message : String(e)}`;
        console.error(`federation "${id}" round ${round}: ${reason}`);
      }
    }
    this.storage.transactionSync(() => {
      deleteBlob(this.sql, sumKey(id, round));
      this.sql.exec(
        "UPDATE rounds SET status = 'failed', closed_at = ?, result = ? WHERE federation_id = ? AND round = ?",
        now,
        JSON.stringify({ reason: reason.slice(0, 2000) }),
        id,
        round,
      );
    });
    return "failed";
  }

  /** The operator's "close now": the open round closes with what it has, if that is at least minClients. */
  async closeNow(id: string, round: number, now: number): Promise<RoundView> {
    const r = this.openRoundRow(id, round);
    const fed = this.get(id);
    if (r.uploads < fed.config.minClients)
      throw new AggregatorError(
        "round_short",
        `round ${round} of "${id}" has ${r.uploads} of the ${fed.config.minClients} uploads it needs to close; fail it instead (POST .../rounds/${round}/fail)`,
      );
    this.finish(id, round, now, "close");
    await this.armAlarm();
    return this.round(id, round);
  }

  /** The operator's "fail now": the open round ends without a new version; its uploads are dropped. */
  async failNow(id: string, round: number, reason: string, now: number): Promise<RoundView> {
    this.openRoundRow(id, round);
    this.finish(id, round, now, "fail", `failed by the operator: ${reason}`);
    await this.armAlarm();
    return this.round(id, round);
  }

  private openRoundRow(id: string, round: number): RoundRow {
    const r = this.sql.exec<RoundRow>("SELECT * FROM rounds WHERE federation_id = ? AND round = ?", id, round).toArray()[0];
    if (!r) throw new AggregatorError("round_not_found", `"${id}" has no round ${round}`);
    if (r.status !== "open") throw new AggregatorError("round_closed", `round ${round} of "${id}" is already ${r.status}`);
    return r;
  }

  /**
   * Applies the strategy to the round's mean delta and stores the next global version and server state,
   * a segment at a time (accumulator.ts); inside a transaction.
   */
  private close(id: string, round: number, now: number): void {
    const fed = this.get(id);
    const r = this.sql.exec<RoundRow>("SELECT * FROM rounds WHERE federation_id = ? AND round = ?", id, round).one();
    const state = this.sql
      .exec<{ server_round: number; server_slots: string }>("SELECT server_round, server_slots FROM federations WHERE id = ?", id)
      .one();
    const previousSlots = JSON.parse(state.server_slots) as string[];
    const header = this.versionHeader(id, r.base_version);
    const version = fed.version + 1;
    const slots = closeSegments(this.sql, {
      layout: flatLayout(header),
      globalKey: versionKey(id, r.base_version),
      dataStart: header.dataStart,
      sumKey: sumKey(id, round),
      totalWeight: r.total_weight,
      strategy: createStrategy(fed.config.strategy),
      round: state.server_round,
      slots: previousSlots,
      stateKey: (slot) => stateKey(id, slot),
      nextKey: versionKey(id, version),
      nextStateKey: (slot) => `${stateKey(id, slot)}#next`,
    });
    for (const slot of previousSlots) deleteBlob(this.sql, stateKey(id, slot));
    for (const slot of slots) this.sql.exec("UPDATE blobs SET key = ? WHERE key = ?", stateKey(id, slot), `${stateKey(id, slot)}#next`);
    this.sql.exec(
      "UPDATE federations SET server_round = ?, server_slots = ? WHERE id = ?",
      state.server_round + 1,
      JSON.stringify(slots),
      id,
    );
    const receipts = this.sql
      .exec<{ num_examples: number; metrics: string }>(
        "SELECT num_examples, metrics FROM receipts WHERE federation_id = ? AND round = ?",
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
    };
    deleteBlob(this.sql, sumKey(id, round));
    // Version 0 stays (clients without a version start from it); the latest keepVersions stay besides.
    const pruned = version - fed.config.keepVersions;
    if (pruned > 0) deleteBlob(this.sql, versionKey(id, pruned));
    this.sql.exec("UPDATE federations SET version = ? WHERE id = ?", version, id);
    this.sql.exec(
      "UPDATE rounds SET status = 'closed', closed_at = ?, result = ? WHERE federation_id = ? AND round = ?",
      now,
      JSON.stringify(result),
      id,
      round,
    );
  }

  /** The alarm's work: every open round past its deadline closes with at least the minimum, else fails. */
  async closeDue(now: number): Promise<void> {
    const due = this.sql
      .exec<{ federation_id: string; round: number; uploads: number }>(
        "SELECT federation_id, round, uploads FROM rounds WHERE status = 'open' AND deadline <= ?",
        now,
      )
      .toArray();
    for (const d of due) {
      const fed = this.get(d.federation_id);
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
    await this.armAlarm();
  }

  /** The alarm points at the earliest open deadline; SQLite is the truth (alarms may repeat). */
  private async armAlarm(): Promise<void> {
    const next = this.sql.exec<{ d: number | null }>("SELECT MIN(deadline) AS d FROM rounds WHERE status = 'open'").one().d;
    if (next === null) await this.storage.deleteAlarm();
    else await this.storage.setAlarm(next);
  }
}
