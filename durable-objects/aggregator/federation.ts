// The aggregator's federations: creating one (its config validated, its method's version 0 made), and
// the facade over its rounds (rounds.ts), uploads (uploads.ts), storage (storage.ts) and views (views.ts)
// that the Durable Object's RPC methods call.
import { clientPlanRefusal, MIB } from "../../src/engine/client-plan.ts";
import { assertModelBounds, parseLlamaConfig } from "../../src/engine/config.ts";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { serverMethods } from "../../src/fl/methods/server.ts";
import type { MethodConfig, ServerMethod } from "../../src/fl/methods/method.ts";
import { flatLayout } from "../../src/fl/flat-tensors.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import type { Strategy } from "../../src/fl/strategy.ts";
import type { FederationConfig } from "../../src/protocol/federation.ts";
import { secureSettings } from "../../src/secagg/federation.ts";
import { checkDistributed } from "../../src/privacy/distributed-dp.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { MAX_ADAPTER_BYTES } from "../../src/protocol/platform-limits.ts";
import { writeBlob } from "../shared/blobs.ts";
import { AggregatorError, refusing, refusingConfig } from "./errors.ts";
import { type ClientProgress, RoundProgress } from "./round-progress.ts";
import { Evaluations } from "./evaluations.ts";
import { parseProgressReport } from "../../src/protocol/progress.ts";
import { isSharded } from "../../src/fl/shards.ts";
import { Rounds } from "./rounds.ts";
import { ShardReplica } from "./shard-replica.ts";
import type { ShardDescriptor, ShardPeers, ShardSeal } from "./sharded-rounds.ts";
import { updateNoiseMultiplier } from "../../src/privacy/central-dp.ts";
import { federationEpsilon } from "../../src/privacy/federation-privacy.ts";
import { FederationStore, keys } from "./storage.ts";
import { checkKept, checkRoundDetail, checkVersionsKept } from "./storage-budget.ts";
import type { FederationView, RoundSummary, RoundView, UploadReceipt, UploadRequest } from "./types.ts";
import type { SecAggMessageRequest, SecAggReceipt, SecAggView } from "./secure-rounds.ts";
import type { SecAggPhaseName } from "../../src/protocol/secure-aggregation.ts";
import { Uploads } from "./uploads.ts";
import { Views } from "./views.ts";

export type { FederationView, RoundSummary, RoundView, UploadReceipt, UploadRequest } from "./types.ts";
export type { SecAggMessageRequest, SecAggReceipt, SecAggView } from "./secure-rounds.ts";

export class Federations {
  private readonly store: FederationStore;
  private readonly rounds: Rounds;
  private readonly uploads: Uploads;
  private readonly views: Views;
  private readonly progress: RoundProgress;
  /** This object's part as a shard of a sharded federation (shard-replica.ts); unused in a root object. */
  private readonly replica: ShardReplica;
  readonly evaluations: Evaluations;

  constructor(storage: DurableObjectStorage, peers: ShardPeers) {
    this.store = new FederationStore(storage);
    this.rounds = new Rounds(this.store, peers);
    this.replica = new ShardReplica(this.store, peers);
    this.uploads = new Uploads(this.store, this.rounds);
    this.views = new Views(this.store);
    this.progress = new RoundProgress(this.store);
    this.evaluations = new Evaluations(this.store);
  }

  /**
   * Validates the config (the federation's fields, the method's by its schema, the strategy's options,
   * the model's shapes, the version's size) and stores the federation with its version 0 and description.
   */
  create(json: unknown, now: number): FederationView {
    const { config, side } = refusingConfig("", () => serverMethods.parseFederation(json));
    const method = config.method;
    const strategy = refusingConfig("", () => createStrategy(config.strategy));
    if (side.strategies && !side.strategies.names.includes(config.strategy.name))
      throw new AggregatorError(
        "config_invalid",
        `${side.strategies.why}: use strategy ${side.strategies.names.map((n) => `"${n}"`).join(" or ")}, not "${config.strategy.name}"`,
      );
    if (config.privacy?.mode === "distributed")
      refusingConfig("privacy", () => checkDistributed(config.privacy!, config.secureAggregation !== undefined));
    if (config.privacy) refusingConfig("privacy", () => updateNoiseMultiplier(config.privacy!, config.clientsPerRound));
    const first = federationEpsilon(config, 1);
    if (first && config.privacy?.epsilonBudget !== undefined && first.epsilon > config.privacy.epsilonBudget)
      throw new AggregatorError(
        "config_invalid",
        `privacy: one round at noiseMultiplier ${config.privacy.noiseMultiplier} and ${config.clientsPerRound} of ` +
          `${config.clients.length} clients already spends ε = ${first.epsilon.toFixed(3)}, past epsilonBudget ` +
          `${config.privacy.epsilonBudget}: raise the noise (npx fedflare privacy --target-epsilon finds it)`,
      );
    if (this.store.exists(config.id)) throw new AggregatorError("federation_exists", `federation "${config.id}" already exists`);
    const model = refusingConfig("model.config", () => {
      const m = parseLlamaConfig(config.model.config);
      assertModelBounds(m);
      return m;
    });
    const floats = refusingConfig("", () => side.versionFloats(method, model));
    checkVersionSize(floats, config.maxUploadBytes);
    checkVersionsKept(config, floats);
    checkRoundDetail(config);
    if (config.secureAggregation) checkSecure(config, floats, side.decode !== undefined);
    if (config.secureAggregation && side.frozen?.(method))
      throw new AggregatorError(
        "config_invalid",
        "secureAggregation: the method's uploads leave its frozen tensors out (FFA-LoRA's A), while a masked input " +
          "carries the whole version; use one of freezeA and secureAggregation",
      );
    if (config.robust) checkRobust(config, floats);
    if (isSharded(config)) checkShards(config);
    const compressed = [
      ...((config.uploadDtype ?? "F32") !== "F32" ? ["uploadDtype"] : []),
      ...(config.topK !== undefined ? ["topK"] : []),
      ...((config.downloadDtype ?? "F32") !== "F32" ? ["downloadDtype"] : []),
    ];
    if (compressed.length && !side.compressible)
      throw new AggregatorError(
        "config_invalid",
        `${compressed.join(", ")}: method "${method.type}" does not upload the change of the version it downloads ` +
          `(compressed transfers are for ${serverMethods
            .types()
            .filter((t) => serverMethods.get(t).compressible)
            .join(", ")})`,
      );
    if (config.topK !== undefined && ((config.uploadDtype ?? "F32") !== "F32" || config.secureAggregation))
      throw new AggregatorError(
        "config_invalid",
        "topK: sparse updates send their values as F32 with their positions, which neither another uploadDtype nor a " +
          "secure round's dense masked input carries; use topK alone",
      );
    if (config.secureAggregation && config.uploadDtype && config.uploadDtype !== "F32")
      throw new AggregatorError(
        "config_invalid",
        `uploadDtype ${config.uploadDtype}: a secure round's masked input is its own fixed-point encoding in Z_2^32 ` +
          "(secureAggregation.range and the clients' count set its precision), not a float tensor; leave uploadDtype out",
      );
    const settings = { quant: config.model.quant, batch: config.local.batchSize, seq: config.local.maxTokens };
    const unfit = clientPlanRefusal(model, side.footprints(method, model), settings, config.clientMemoryMiB * MIB);
    if (unfit) throw new AggregatorError("config_invalid", unfit);
    const initial = refusingConfig("", () => side.initial(method, config, model));
    checkMethodRules(config, side, method, initial.tensors);
    const version0 = initial.tensors && strategy.initialParameters ? startingFrom(strategy, initial.tensors) : initial.tensors;
    this.store.storage.transactionSync(() => {
      this.store.sql.exec(
        "INSERT INTO federations (id, config, created_at, version) VALUES (?, ?, ?, 0)",
        config.id,
        JSON.stringify(config),
        now,
      );
      if (version0) writeBlob(this.store.sql, keys.version(config.id, 0), version0);
      writeBlob(this.store.sql, keys.description(config.id), new TextEncoder().encode(initial.description));
    });
    return this.store.get(config.id);
  }

  get(id: string): FederationView {
    return this.store.get(id);
  }

  readBy(id: string, client?: string): FederationView {
    return this.store.readBy(id, client);
  }

  async openRound(id: string, now: number): Promise<RoundView> {
    return this.views.round(id, await this.rounds.open(id, now));
  }

  async closeNow(id: string, round: number, now: number): Promise<RoundView> {
    await this.rounds.closeNow(id, round, now);
    return this.views.round(id, round);
  }

  async failNow(id: string, round: number, reason: string, now: number): Promise<RoundView> {
    await this.rounds.failNow(id, round, reason, now);
    return this.views.round(id, round);
  }

  closeDue(now: number): Promise<void> {
    return this.rounds.closeDue(now);
  }

  round(id: string, round: number): RoundView {
    return { ...this.views.round(id, round), progress: this.progress.of(id, round) };
  }

  /**
   * A round as its readers see it: a sharded plain round, while open, counts its uploads over its shards (its
   * receipts and weights come to this object when they are sealed); a shard that cannot answer leaves the count
   * as this object has it.
   */
  async roundNow(id: string, round: number): Promise<RoundView> {
    const view = this.round(id, round);
    if (view.status !== "open" || view.phase !== null || !isSharded(this.store.get(id).config)) return view;
    const uploads = await this.rounds.sharded.uploads(id, round).catch(() => view.uploads);
    return { ...view, uploads };
  }

  /** A sampled client's heartbeat in an open round (round-progress.ts). */
  reportProgress(id: string, round: number, client: string, body: Uint8Array, now: number): ClientProgress {
    const report = refusing("progress", () => parseProgressReport(body));
    return this.progress.report(id, round, client, report, now);
  }

  /** Forgets what the object keeps in memory of a federation (it was deleted). */
  forget(id: string): void {
    this.progress.forget(id);
    this.store.forget(id);
  }

  metrics(id: string, from: number, limit: number): RoundSummary[] {
    return this.views.metrics(id, from, limit);
  }

  version(id: string, version: number): Uint8Array {
    this.store.get(id);
    return this.store.version(id, version);
  }

  versionStream(id: string, version: number): { bytes: number; stream: ReadableStream<Uint8Array> } {
    this.store.get(id);
    return this.store.versionStream(id, version);
  }

  versionView(id: string, version: number, name: string, query: Readonly<Record<string, string>>): Uint8Array {
    return this.views.versionView(id, version, name, query);
  }

  adapterConfig(id: string): string {
    this.store.get(id);
    return this.store.description(id);
  }

  supplyInitial(id: string, body: Uint8Array): FederationView {
    this.uploads.supplyInitial(id, body);
    return this.store.get(id);
  }

  /** An upload: folded here, or, routed to a shard object, into the shard's partial sum of its round. */
  async upload(u: UploadRequest, now: number): Promise<UploadReceipt> {
    if (u.shard === undefined) return this.uploads.upload(u, now);
    await this.replica.ensure(u.federationId, u.round, u.shard);
    return this.uploads.upload(u, now, this.replica);
  }

  /** The root's answer to a shard taking its part of a round. */
  shardDescriptor(id: string, round: number, shard: number): ShardDescriptor {
    const fed = this.store.get(id);
    if ((fed.config.shards ?? 1) <= shard)
      throw new AggregatorError("misdirected", `"${id}" has ${fed.config.shards ?? 1} shard objects, no shard ${shard}`);
    return this.rounds.sharded.descriptor(id, round, shard);
  }

  /** The root's answer to a shard that has its part of the quorum. */
  shardReady(id: string, round: number, shard: number, now: number): Promise<RoundView["status"]> {
    return this.rounds.shardReady(id, round, shard, now);
  }

  /** A shard's end of its part of a round, at the root's call. */
  sealShard(d: ShardDescriptor): ShardSeal {
    return this.replica.seal(d);
  }

  shardChunk(id: string, round: number, chunk: number): Uint8Array {
    return this.replica.chunk(id, round, chunk);
  }

  shardUploads(id: string, round: number): number {
    return this.replica.uploads(id, round);
  }

  /** Deletes what the federation's shard objects hold (a root deleting its federation). */
  dropShards(id: string): Promise<void> {
    return this.rounds.sharded.drop(this.store.get(id));
  }

  secAggView(id: string, round: number, client: string): SecAggView {
    return this.rounds.secure.view(id, round, client);
  }

  secAggMessage(kind: SecAggPhaseName, m: SecAggMessageRequest, now: number): Promise<SecAggReceipt> {
    return this.rounds.secure.receive(kind, m, now);
  }
}

/**
 * A secure federation's settings must make a round (secureSettings), its masked input (the values and the
 * weight ratio, 4 bytes each, and a header) must fit its maxUploadBytes, and it cannot also ask for central
 * DP, whose aggregator clips each update in the clear.
 */
function checkSecure(config: FederationConfig, floats: number, ownUploads: boolean): void {
  if (ownUploads)
    throw new AggregatorError(
      "config_invalid",
      `secureAggregation: method "${config.method.type}" uploads in a format of its own (its server side decodes them); ` +
        `secure aggregation takes methods whose uploads are the version's tensors: ${serverMethods
          .types()
          .filter((t) => !serverMethods.get(t).decode)
          .join(", ")}`,
    );
  if (config.privacy?.mode === "central")
    throw new AggregatorError(
      "config_invalid",
      "privacy with secureAggregation: central DP clips each update where the aggregator sees it in the clear, which secure " +
        'aggregation forbids: use privacy.mode "distributed" (clients clip and noise before masking)',
    );
  refusingConfig("secureAggregation", () => secureSettings(config));
  const bytes = (floats + 1) * 4 + MASKED_HEADER_BYTES;
  if (bytes > config.maxUploadBytes)
    throw new AggregatorError(
      "config_invalid",
      `secureAggregation: a masked input would be ${bytes} bytes, over maxUploadBytes ${config.maxUploadBytes}`,
    );
}

/**
 * A robust federation's rule must see each update in the clear, so it cannot run with secure aggregation
 * or with DP (whose noise is calibrated to the mean's sensitivity, not a median's); Krum and Bulyan must
 * outnumber their attackers in every round that can close; a round's updates, all kept until it closes, must
 * fit in the object's storage with room to spare.
 */
function checkRobust(config: FederationConfig, floats: number): void {
  const robust = config.robust!;
  const refuse = (message: string) => {
    throw new AggregatorError("config_invalid", `robust: ${message}`);
  };
  if (config.secureAggregation)
    refuse(
      "its rules need each update in the clear, which secure aggregation hides; under secure aggregation, bound each " +
        'update\'s norm on the client with privacy.mode "distributed" (each client clips before masking)',
    );
  if (config.privacy) refuse("DP's noise is calibrated to the plain mean's sensitivity; a federation takes one of privacy and robust");
  const rule = robust.rule;
  const krum = rule.name === "krum" || rule.name === "multi-krum" || rule.name === "bulyan";
  // What to change: minClients, or byzantine down to the most a round of minClients outvotes.
  const remedy = (most: number) => `raise minClients (${config.minClients})${most >= 0 ? ` or lower byzantine to ${most}` : ""}`;
  if (rule.name === "bulyan" && config.minClients < 4 * rule.byzantine + 3)
    refuse(
      `bulyan tolerates ${rule.byzantine} attackers only among at least ${4 * rule.byzantine + 3} updates; ` +
        remedy(Math.floor((config.minClients - 3) / 4)),
    );
  if (krum && config.minClients <= 2 * rule.byzantine + 2)
    refuse(
      `${rule.name} tolerates ${rule.byzantine} attackers only among more than ${2 * rule.byzantine + 2} updates; ` +
        remedy(Math.floor((config.minClients - 3) / 2)),
    );
  if (rule.name === "multi-krum" && rule.select !== undefined && rule.select > config.minClients)
    refuse(`multi-krum selects ${rule.select} updates, more than a round closing with minClients (${config.minClients}) has`);
  // Krum's distances: a float64 per pair of updates in memory, and the pairs' values in CPU at the close.
  if (krum && 8 * config.clientsPerRound ** 2 > KRUM_MEMORY_BYTES)
    refuse(`${rule.name} keeps a distance per pair of updates: ${config.clientsPerRound} a round is more than its memory allows`);
  if (krum && (config.clientsPerRound ** 2 / 2) * floats > KRUM_PAIR_VALUES)
    refuse(
      `${rule.name} compares every pair of updates at the close: ${config.clientsPerRound} updates of ${floats} values ` +
        "would pass the close's five minutes of CPU (bench/robust-cost.ts); sample fewer clients or use the median",
    );
  if (rule.name === "trimmed-mean" && rule.trim > 0 && Math.floor(rule.trim * config.minClients) === 0)
    refuse(
      `trimmed-mean cuts ⌊trim · n⌋ values at each end: with trim ${rule.trim}, a round closing with minClients ` +
        `(${config.minClients}) cuts none; raise trim or minClients`,
    );
  // The mean and the geometric median weigh updates by the example counts clients declare.
  if ((rule.name === "mean" || rule.name === "geometric-median") && !robust.weights)
    refuse(
      `${rule.name} weighs each update by the examples its client declares, so one client claiming many outweighs ` +
        'the rest: set weights ("uniform", or {"cap": N})',
    );
  checkKept(config, floats, "robust");
}

/** Memory a method's own rule may hold at the close (its factors for every update of one module), of the isolate's 128 MB. */
const METHOD_RULE_BYTES = 32 * MIB;
/**
 * Work a method's own rule may do at the close: bench/hetero-cost.ts measured 21 to 40 ns a unit of the SVD on
 * modules of 576 to 4096 (this project's 2-core machine, two benchmarks beside it; small SVDs cost more a unit
 * but little in all), so 3e9 units is about two minutes, inside a Durable Object's five minutes of CPU.
 */
const METHOD_RULE_WORK = 3e9;

/**
 * Uploads in each client's own shape (perClient) are lifted by the aggregator, which needs them in the clear and in
 * one object; a method's own rule (aggregation) keeps every update, as a robust rule does, and replaces the mean DP
 * is calibrated to.
 */
function checkMethodRules(config: FederationConfig, side: ServerMethod, method: MethodConfig, initial: Uint8Array | null): void {
  const per = side.perClient?.(method) ?? null;
  const own = side.aggregation?.(method) ?? null;
  const what = own?.option ?? per?.option;
  if (!what) return;
  const refuse = (message: string) => {
    throw new AggregatorError("config_invalid", `${what}: ${message}`);
  };
  if (config.secureAggregation)
    refuse("the aggregator reads each client's upload in its own shape, which a masked input hides; use one of them");
  if (isSharded(config)) refuse("each upload is lifted against the version the root object holds; use one of them and shards");
  if (own && config.robust) refuse("the method's rule and a robust rule both make the round's aggregate; use one of them");
  if (per && config.topK !== undefined)
    refuse(
      "a sparse upload's tensors are its values and their positions, which do not say the client's shapes (nor, FLoRA's, " +
        "are they changes top-k's error feedback could carry); leave topK out",
    );
  if (own?.strategies && !own.strategies.names.includes(config.strategy.name))
    refuse(`${own.strategies.why}: use strategy ${own.strategies.names.map((n) => `"${n}"`).join(" or ")}, not "${config.strategy.name}"`);
  if (own && config.privacy) refuse("DP's noise is calibrated to the plain mean's sensitivity, which the method's rule replaces");
  if (!own || !initial) return;
  const layout = flatLayout(readSafetensorsHeader(initial));
  checkKept(config, layout.total, what);
  const peak = own.peakBytes(layout, config.clientsPerRound);
  if (peak > METHOD_RULE_BYTES)
    refuse(
      `its close would hold ${peak} bytes for ${config.clientsPerRound} updates, over ${METHOD_RULE_BYTES}; sample fewer clients a round`,
    );
  const work = own.work(layout, config.clientsPerRound);
  if (work > METHOD_RULE_WORK)
    refuse(
      `its close would take ${work.toExponential(2)} units of work for ${config.clientsPerRound} updates, over ` +
        `${METHOD_RULE_WORK.toExponential(0)} (about two minutes: bench/hetero-cost.ts); sample fewer clients a round or lower the rank`,
    );
}

/**
 * A sharded federation folds each shard's uploads into a partial sum the root adds up: what a plain or
 * central-DP round accumulates, and a secure round's masked inputs in Z_2^32 (sums too). A robust rule needs
 * every update in one place (run per shard, a median of each shard's updates is not the round's): refused.
 */
function checkShards(config: FederationConfig): void {
  if (config.robust)
    throw new AggregatorError(
      "config_invalid",
      "shards: a robust rule needs all of a round's updates in one object, which shards split; use one of shards and robust",
    );
}

/** Krum's pairwise distances may take this much of the isolate's memory. */
const KRUM_MEMORY_BYTES = 16 * 2 ** 20;
/**
 * Values compared at a Krum close at most: bench/robust-cost.ts measured 1e10 (100 updates of 2M values)
 * in 23-28 s on this project's 2-core machine, so this stays inside the five-minute CPU limit.
 */
const KRUM_PAIR_VALUES = 1e11;

/** Room for a masked input's safetensors header and its metadata. */
const MASKED_HEADER_BYTES = 4096;

/** Version 0 as the strategy starts from the method's (Flower's initialize_parameters), in the same layout. */
function startingFrom(strategy: Strategy, methodInitial: Uint8Array): Uint8Array {
  const file = decodeTensorFile(methodInitial, "version 0");
  const tensors = strategy.initialParameters!(file.tensors);
  return encodeTensorFile(tensors, file.shapes, file.metadata);
}

/**
 * Refuses, before anything is allocated, a federation whose versions could not live inside the
 * platform's limits (src/protocol/platform-limits.ts): an upload of the adapter crosses one RPC call,
 * under its maxUploadBytes.
 */
function checkVersionSize(floats: number, maxUploadBytes: number): void {
  const bytes = floats * 4;
  const largest = Math.min(MAX_ADAPTER_BYTES, maxUploadBytes);
  if (bytes > largest)
    throw new AggregatorError(
      "config_invalid",
      `the adapter would be ${bytes} bytes (${floats} float32 values); a federation's adapter may be at most ${largest} bytes (${
        largest === MAX_ADAPTER_BYTES ? "what an upload carries through one Durable Object RPC call of 32 MiB" : "its maxUploadBytes"
      }): use a smaller rank, fewer target modules or layers`,
    );
}
