// A client's trainer: one Durable Object per federation in the client's own deployment. It keeps each
// round's job and its resumable local state in SQLite and advances it from alarms, a bounded number of
// steps per invocation, so local training never outlives a Worker's CPU budget and survives eviction.
import { DurableObject } from "cloudflare:workers";
import { tokenizeExample, type TokenizedExample } from "../../src/data/examples.ts";
import { loadConfig, loadModel, loadModelTokenizer, type LoadedModel } from "../../src/engine/model-files.ts";
import type { TextTokenizer } from "../../src/engine/tokenizer/load.ts";
import type { LlamaConfig } from "../../src/engine/config.ts";
import { localResult, runLocalSteps, startLocal, type LocalTask } from "../../src/fl/client/local-update.ts";
import { loadedLayers } from "../../src/fl/client/method-plan.ts";
import type { TrainStep } from "../../src/engine/train/step.ts";
import {
  decodeLocalState,
  decodeZoState,
  decodeZoTermsState,
  encodeLocalState,
  encodeZoState,
  encodeZoTermsState,
} from "../../src/fl/client/state-file.ts";
import { endpointZoEvaluator } from "../../src/fl/client/zo-endpoint.ts";
import { globalTerms, seedPool, type SeedTerms } from "../../src/fl/zo/fedkseed.ts";
import { seedChangesTo, type SeedChange } from "../../src/fl/zo/seed-sync.ts";
import { connectTrunk, type TrunkCache } from "../../src/fl/client/trunk-states.ts";
import {
  attemptUpload,
  deltaBody,
  MAX_UPLOAD_ATTEMPTS,
  updateMetadata,
  uploadRequest,
  uploadRetryDelayMs,
} from "../../src/fl/client/upload.ts";
import {
  startZo,
  zoGlobal,
  zoInitial,
  zoLocalSteps,
  zoMetrics,
  zoSteps,
  type ZoState,
  type ZoTask,
} from "../../src/fl/client/zo-update.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { decodeSeedSums, encodeSeedSums } from "../../src/fl/zo/seed-sums.ts";
import { labelWordsOf, type DiscretePromptMethod, type FedBptMethod, type FedKSeedMethod } from "../../src/protocol/federation.ts";
import { completionsRowScorer } from "../../src/fl/prompt/completions-api.ts";
import {
  discreteDelta,
  discreteItems,
  discreteSteps,
  distributionsOf,
  promptTokens,
  startDiscrete,
  type DiscreteState,
} from "../../src/fl/prompt/discrete-round.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { bodyDigest } from "../../src/protocol/signature.ts";
import { labeledPrompts, wordIds } from "../../src/engine/train/evaluate.ts";
import type { Example } from "../../src/data/jsonl.ts";
import { shuffled } from "../../src/data/lm-windows.ts";
import { roundStream } from "../../src/engine/sampling.ts";
import {
  bbtDelta,
  bbtGenerations,
  bbtGlobalOf,
  endpointPromptScorer,
  localPromptScorer,
  startBbt,
  type BbtClientState,
} from "../../src/fl/bbt/fedbpt.ts";
import { deleteBlob, readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { applyMigrations } from "../../durable-objects/shared/migrations.ts";
import { workerdOrtRuntime } from "../lib/ort-workerd.ts";
import type { ClientEnv } from "./env.ts";
import { federationRefusal, ownerLimits, roundRefusal } from "./policy.ts";
import { coordinatorFetch, loadPartition, r2ModelSource, readResponse, readRound, scoredAtEndpoint } from "./sources.ts";
import { failure, TransientError } from "../../src/fl/client/transient.ts";
import { HTTPException } from "hono/http-exception";

const MIGRATIONS = [
  [
    `CREATE TABLE jobs (
      federation_id TEXT NOT NULL,
      round INTEGER NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('queued', 'training', 'uploaded', 'failed')),
      task TEXT,
      steps_done INTEGER NOT NULL DEFAULT 0,
      attempts INTEGER NOT NULL DEFAULT 0,
      detail TEXT,
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (federation_id, round)
    )`,
    "CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))",
  ],
  // The upload, once made, is kept (blob "delta/...") and described here, so retries send the same body.
  [
    "ALTER TABLE jobs ADD COLUMN upload_bytes INTEGER",
    "ALTER TABLE jobs ADD COLUMN upload_sha256 TEXT",
    "ALTER TABLE jobs ADD COLUMN upload_metrics TEXT",
  ],
  // Slices retried after a transient failure (the coordinator or an endpoint busy, down or unreachable).
  ["ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0"],
];

/** A job's slices may meet this many transient failures in a row, retried with backoff (1 s, 2 s, ... 32 s), before it fails. */
export const MAX_SLICE_RETRIES = 6;

export interface JobView {
  federationId: string;
  round: number;
  status: "queued" | "training" | "uploaded" | "failed";
  stepsDone: number;
  detail: string | null;
  /** The upload's size and hex SHA-256 once made (null before), never its content. */
  uploadBytes: number | null;
  uploadSha256: string | null;
  /** The metrics the upload declares to the coordinator (loss, steps, bytes downloaded, API use). */
  uploadMetrics: Record<string, number> | null;
}

type JobRow = {
  federation_id: string;
  round: number;
  status: JobView["status"];
  task: string | null;
  steps_done: number;
  attempts: number;
  detail: string | null;
  upload_bytes: number | null;
  upload_sha256: string | null;
  upload_metrics: string | null;
  retries: number;
};

/** What every method's slice of work reads: the job, its storage keys, the version it started from, its saved state. */
interface Slice {
  job: JobRow;
  key: (what: string) => string;
  global: ReturnType<typeof decodeTensorFile>;
  saved: Uint8Array | null;
  perInvocation: number;
}

/** A round's task as the job keeps it: for any method, with what it started from. */
type ClientTask = Omit<LocalTask, "method"> & {
  method: LocalTask["method"] | FedKSeedMethod | FedBptMethod | DiscretePromptMethod;
  /** The federation's model name (what a completions API serves it as, unless OPENAI_MODEL says otherwise). */
  modelName: string;
  federationSeed: number;
  baseVersion: number;
  /** Bytes this client downloaded to start the round (the version, or FedKSeed's seed changes). */
  downloadBytes?: number;
};

/** A LoRA method above layer 0 with an endpoint for the trunk: the client holds only the layers from the cut. */
function isOffloaded(env: ClientEnv, method: ClientTask["method"]): boolean {
  return env.TRUNK_URL !== undefined && method.type === "lora" && method.fromLayer > 0;
}

export class ClientTrainer extends DurableObject<ClientEnv> {
  private readonly sql: SqlStorage;
  /** The model and tokenized partition, kept while this instance lives (reloaded after eviction). */
  private cache: { model: LoadedModel; examples: TokenizedExample[]; raw: Example[]; key: string } | null = null;
  /** Without weights (a client that scores at an API or endpoint): the tokenizer, the config, the partition, tokenized per maxTokens. */
  private prompts: { tokenizer: TextTokenizer; config: LlamaConfig; raw: Example[]; tokenized: Map<number, TokenizedExample[]> } | null =
    null;
  /** Training sessions of the job in progress, kept between its slices (released when it ends). */
  private sessions = new Map<string, TrainStep>();
  private sessionsJob = "";

  constructor(ctx: DurableObjectState, env: ClientEnv) {
    super(ctx, env);
    applyMigrations(ctx.storage, MIGRATIONS);
    this.sql = ctx.storage.sql;
  }

  /** Queues a round's job (idempotent) and wakes the alarm to work on it. */
  async start(federationId: string, round: number): Promise<JobView> {
    this.sql.exec(
      "INSERT INTO jobs (federation_id, round, status, updated_at) VALUES (?, ?, 'queued', ?) ON CONFLICT DO NOTHING",
      federationId,
      round,
      Date.now(),
    );
    await this.ctx.storage.setAlarm(Date.now());
    return this.job(federationId, round)!;
  }

  job(federationId: string, round: number): JobView | null {
    const r = this.sql.exec<JobRow>("SELECT * FROM jobs WHERE federation_id = ? AND round = ?", federationId, round).toArray()[0];
    if (!r) return null;
    const metrics = r.upload_metrics === null ? null : (JSON.parse(r.upload_metrics) as Record<string, number>);
    return {
      federationId: r.federation_id,
      round: r.round,
      status: r.status,
      stepsDone: r.steps_done,
      detail: r.detail,
      uploadBytes: r.upload_bytes,
      uploadSha256: r.upload_sha256,
      uploadMetrics: metrics,
    };
  }

  /**
   * The upload this client made for a round (safetensors), for its owner's own code and tests (RPC on the
   * binding): no route of the worker serves it.
   */
  delta(federationId: string, round: number): Uint8Array | null {
    return readBlob(this.sql, `delta/${federationId}/${round}`);
  }

  override async alarm(): Promise<void> {
    const job = this.sql.exec<JobRow>("SELECT * FROM jobs WHERE status IN ('queued', 'training') ORDER BY round LIMIT 1").toArray()[0];
    if (!job) return;
    try {
      const more = await this.advance(job);
      if (job.retries > 0) this.sql.exec("UPDATE jobs SET retries = 0 WHERE federation_id = ? AND round = ?", job.federation_id, job.round);
      if (more !== null) await this.ctx.storage.setAlarm(Date.now() + more);
    } catch (e) {
      const message = (e as Error).message;
      const transient = e instanceof TransientError || (e instanceof HTTPException && e.status === 502);
      if (transient && job.retries < MAX_SLICE_RETRIES) {
        this.sql.exec(
          "UPDATE jobs SET retries = retries + 1, detail = ?, updated_at = ? WHERE federation_id = ? AND round = ?",
          `retry ${job.retries + 1} of ${MAX_SLICE_RETRIES}: ${message}`,
          Date.now(),
          job.federation_id,
          job.round,
        );
        await this.ctx.storage.setAlarm(Date.now() + 1000 * 2 ** job.retries);
        return;
      }
      this.fail(job, message);
      await this.ctx.storage.setAlarm(Date.now());
    }
  }

  /** One slice of work; returns the delay before the next slice, or null when the job is finished. */
  private async advance(job: JobRow): Promise<number | null> {
    const key = (what: string) => `${what}/${job.federation_id}/${job.round}`;
    const made = readBlob(this.sql, key("delta"));
    if (made) return this.upload(job, made);
    const task = job.task ? (JSON.parse(job.task) as ClientTask) : null;
    if (!task) {
      await this.prepare(job, key);
      return 0;
    }
    const global = decodeTensorFile(readBlob(this.sql, key("global"))!, "global");
    const perInvocation = Number(this.env.STEPS_PER_INVOCATION ?? "8");
    const saved = readBlob(this.sql, key("state"));
    const slice: Slice = { job, key, global, saved, perInvocation };
    const m = task.method;
    const body =
      m.type === "discrete"
        ? await this.discreteSlice(slice, { ...task, method: m })
        : m.type === "fedbpt"
          ? await this.fedbptSlice(slice, { ...task, method: m })
          : m.type === "fedkseed"
            ? await this.fedkseedSlice(slice, { ...task, method: m })
            : await this.gradientSlice(slice, { ...task, method: m });
    if (body === null) return 0;
    // Kept before the first attempt: every retry sends these same bytes under the same idempotency key.
    const metrics = readSafetensorsHeader(body).metadata.metrics ?? "{}";
    const sha256 = await bodyDigest(body);
    this.ctx.storage.transactionSync(() => {
      writeBlob(this.sql, key("delta"), body);
      for (const k of ["global", "state"]) deleteBlob(this.sql, key(k));
      this.sql.exec(
        "UPDATE jobs SET upload_bytes = ?, upload_sha256 = ?, upload_metrics = ?, updated_at = ? WHERE federation_id = ? AND round = ?",
        body.length,
        sha256,
        metrics,
        Date.now(),
        job.federation_id,
        job.round,
      );
    });
    return this.upload(job, body);
  }

  /**
   * One upload attempt, signed anew. Network errors, 5xx and an expired signature are retried with
   * exponential backoff from the alarm (the same key and body, so the coordinator folds it once);
   * other refusals, or the last attempt, fail the job.
   */
  private async upload(job: JobRow, body: Uint8Array): Promise<number | null> {
    const req = uploadRequest(job.federation_id, job.round, this.env.CLIENT_ID);
    const { outcome, detail } = await attemptUpload(() =>
      coordinatorFetch(this.env, req.path, { method: "PUT", headers: req.headers, body }),
    );
    if (outcome === "accepted") {
      // The accepted upload is kept for inspection; earlier rounds' are not, so storage does not grow with rounds.
      const prefix = `delta/${job.federation_id}/`;
      this.ctx.storage.transactionSync(() => {
        this.sql.exec("DELETE FROM blobs WHERE substr(key, 1, ?) = ? AND key != ?", prefix.length, prefix, `${prefix}${job.round}`);
        this.sql.exec(
          "UPDATE jobs SET status = 'uploaded', detail = ?, updated_at = ? WHERE federation_id = ? AND round = ?",
          detail,
          Date.now(),
          job.federation_id,
          job.round,
        );
      });
      return null;
    }
    const attempts = job.attempts + 1;
    if (outcome === "refused" || attempts >= MAX_UPLOAD_ATTEMPTS)
      throw new Error(`upload ${outcome === "refused" ? "refused" : `failed after ${attempts} attempts`}: ${detail}`);
    this.sql.exec(
      "UPDATE jobs SET attempts = ?, detail = ?, updated_at = ? WHERE federation_id = ? AND round = ?",
      attempts,
      `upload attempt ${attempts} of ${MAX_UPLOAD_ATTEMPTS}: ${detail}`,
      Date.now(),
      job.federation_id,
      job.round,
    );
    return uploadRetryDelayMs(job.attempts);
  }

  /** Discrete prompts: policy-gradient steps scored at the completions API; null while steps remain. */
  private async discreteSlice(
    { job, key, global, saved, perInvocation }: Slice,
    task: ClientTask & { method: DiscretePromptMethod },
  ): Promise<Uint8Array | null> {
    const m = task.method;
    const { tokenizer, raw } = await this.loadTokenizer();
    const labeled = labeledPrompts(raw).filter((x) => m.labels.includes(x.label));
    if (labeled.length === 0)
      throw new Error(`no example of this client's partition is a prompt whose completion is one of ${JSON.stringify(m.labels)}`);
    if (!this.env.OPENAI_BASE_URL)
      throw new Error(
        "a discrete-prompt federation scores prompts at an OpenAI-compatible API: set OPENAI_BASE_URL (and OPENAI_API_KEY) in this client's deployment",
      );
    const start = distributionsOf(global.tensors, m);
    let state = saved ? (JSON.parse(new TextDecoder().decode(saved)) as DiscreteState) : startDiscrete(start);
    if (state.step < task.local.steps && !state.exhausted) {
      const scorer = completionsRowScorer({
        baseURL: this.env.OPENAI_BASE_URL,
        ...(this.env.OPENAI_API_KEY ? { apiKey: this.env.OPENAI_API_KEY } : {}),
        model: this.env.OPENAI_MODEL ?? task.modelName,
      });
      const opts = {
        steps: task.local.steps,
        population: m.population,
        lr: task.local.lr,
        batchSize: task.local.batchSize,
        maxTokens: task.local.maxTokens,
        clientSeed: task.seed,
        round: task.round,
        ...(m.queryBudget ? { budget: m.queryBudget } : {}),
      };
      state = await discreteSteps(
        scorer,
        promptTokens(tokenizer, m.phrases, labelWordsOf(m), m.placement),
        discreteItems(tokenizer, labeled, m.labels),
        state,
        perInvocation,
        opts,
      );
      this.saveProgress(job, key, new TextEncoder().encode(JSON.stringify(state)), state.step);
      return null;
    }
    const spent = {
      api_requests: state.usage.requests,
      api_rows: state.usage.rows,
      api_prompt_tokens: state.usage.promptTokens,
      steps: state.step,
      download_bytes: task.downloadBytes ?? 0,
    };
    return encodeTensorFile(
      discreteDelta(start, state.distributions),
      global.shapes,
      updateMetadata(labeled.length, Number.isFinite(state.lastLoss) ? { train_loss: state.lastLoss, ...spent } : spent),
    );
  }

  /** FedBPT: one CMA-ES generation per invocation; null while generations remain. */
  private async fedbptSlice({ job, key, global, saved }: Slice, task: ClientTask & { method: FedBptMethod }): Promise<Uint8Array | null> {
    const m = task.method;
    // At an endpoint the client holds the tokenizer and its data, no weights.
    const remote = scoredAtEndpoint(this.env, m) ? await this.loadTokenizer() : null;
    const model = remote ? null : (await this.load(task)).model;
    const labeled = labeledPrompts(remote ? remote.raw : this.cache!.raw).filter((x) => m.labels.includes(x.label));
    if (labeled.length === 0)
      throw new Error(`no example of this client's partition is a prompt whose completion is one of ${JSON.stringify(m.labels)}`);
    const start = bbtGlobalOf(global.tensors);
    let state = saved ? (JSON.parse(new TextDecoder().decode(saved)) as BbtClientState) : startBbt(start, task.seed + task.round);
    if (state.cma.generation < m.generations) {
      const space = { promptTokens: m.promptTokens, dimension: m.dimension, seed: task.federationSeed };
      // At an endpoint only token ids and each candidate's z go out; the endpoint makes the prompt.
      const scorer = remote
        ? endpointPromptScorer(
            await connectTrunk(this.env.TRUNK_URL!, 0, this.env.TRUNK_TOKEN),
            remote.config,
            remote.tokenizer,
            space,
            m,
            task.local.maxTokens,
          )
        : await localPromptScorer(workerdOrtRuntime(), model!.config, model!.weights, model!.tokenizer, space, m, task.local.maxTokens);
      // Each generation scores its candidates on a seeded sample of local.batchSize examples.
      const itemsOf = (g: number) => shuffled(labeled, roundStream(task.seed, task.round, 0, g)).slice(0, task.local.batchSize);
      const noiseOf =
        m.perturb > 0 ? (g: number) => ({ rate: m.perturb, draws: () => roundStream(task.seed, task.round, 2, g) }) : undefined;
      state = await bbtGenerations(scorer, state, itemsOf, 1, m.population, noiseOf);
      await scorer.release();
      this.saveProgress(job, key, new TextEncoder().encode(JSON.stringify(state)), state.cma.generation);
      return null;
    }
    return encodeTensorFile(
      bbtDelta(start, state.cma),
      global.shapes,
      updateMetadata(labeled.length, {
        train_loss: state.lastBest,
        evaluations: state.evaluations,
        generations: state.cma.generation,
        download_bytes: task.downloadBytes ?? 0,
      }),
    );
  }

  /** FedKSeed: zeroth-order steps, on local tensors or at the endpoint; null while steps remain. */
  private async fedkseedSlice(
    { job, key, global, saved, perInvocation }: Slice,
    task: ClientTask & { method: FedKSeedMethod },
  ): Promise<Uint8Array | null> {
    const m = task.method;
    const atEndpoint = scoredAtEndpoint(this.env, m);
    const { tokenizer, examples } = atEndpoint
      ? await this.loadTokenized(task)
      : { ...(await this.load(task)), tokenizer: this.cache!.model.tokenizer };
    const zoTask: ZoTask = {
      ...task,
      method: m,
      ...(m.labels
        ? {
            labelIds: wordIds(tokenizer, m.labels),
            wordIds: wordIds(tokenizer, labelWordsOf({ labels: m.labels, labelWords: m.labelWords })),
          }
        : {}),
    };
    // A zeroth-order step scores two points (each over every label with labels): about four times a
    // gradient step's forward work, so an invocation takes a quarter of the steps.
    const steps = Math.max(1, Math.floor(perInvocation / 4));
    const history = this.seedHistory(job.federation_id, m.k);
    let state: ZoState<unknown>;
    if (atEndpoint) {
      let at = saved ? decodeZoTermsState(saved) : startZo<SeedTerms>(JSON.parse(global.metadata.terms ?? "[]") as SeedTerms);
      if (at.step < task.local.steps) {
        const ep = await connectTrunk(this.env.TRUNK_URL!, 0, this.env.TRUNK_TOKEN);
        at = await zoSteps(endpointZoEvaluator(ep, m, task.federationSeed), zoTask, examples, at, steps, history);
        this.saveProgress(job, key, encodeZoTermsState(at), at.step);
        return null;
      }
      state = at;
    } else {
      let at = saved ? decodeZoState(saved) : startZo(global.tensors);
      if (at.step < task.local.steps) {
        const { model } = this.cache!;
        at = await zoLocalSteps(
          { config: model.config, weights: model.weights, runtime: workerdOrtRuntime() },
          zoTask,
          examples,
          at,
          steps,
          history,
        );
        this.saveProgress(job, key, encodeZoState(at), at.step);
        return null;
      }
      state = at;
    }
    return encodeSeedSums(state.sums, updateMetadata(examples.length, { ...zoMetrics(state), download_bytes: task.downloadBytes ?? 0 }));
  }

  /** LoRA and offsite-tuning: gradient steps (the trunk offloaded where configured); null while steps remain. */
  private async gradientSlice(
    { job, key, global, saved, perInvocation }: Slice,
    task: ClientTask & { method: LocalTask["method"] },
  ): Promise<Uint8Array | null> {
    const { model, examples } = await this.load(task);
    const localTask: LocalTask = { ...task, method: task.method };
    const offloaded = isOffloaded(this.env, task.method);
    let state = saved ? decodeLocalState(saved) : startLocal(global.tensors);
    if (state.step < task.local.steps) {
      const trunk = offloaded
        ? { endpoint: await connectTrunk(this.env.TRUNK_URL!, model.config.hiddenSize, this.env.TRUNK_TOKEN), cache: this.trunkCache() }
        : undefined;
      if (this.sessionsJob !== key("job")) await this.releaseSessions(key("job"));
      state = await runLocalSteps(
        { config: model.config, weights: model.weights, runtime: workerdOrtRuntime(), sessions: this.sessions },
        localTask,
        global.tensors,
        examples,
        state,
        perInvocation,
        trunk,
      );
      this.saveProgress(job, key, encodeLocalState(state), state.step);
      return null;
    }
    await this.releaseSessions("");
    const result = localResult(global.tensors, state, examples.length);
    return deltaBody({ ...result, metrics: { ...result.metrics, download_bytes: task.downloadBytes ?? 0 } }, global.shapes);
  }

  /**
   * Reads the round's task, refuses it unless this client takes it (listed federation, open round that
   * sampled it, within the owner's limits), and stores what the job starts from: the global version's
   * tensors, or for FedKSeed the global model this client rebuilds from the per-seed changes since the
   * version it last held. What it downloads is capped by MAX_DOWNLOAD_BYTES as it reads.
   */
  private async prepare(job: JobRow, key: (what: string) => string): Promise<void> {
    const round = await readRound(this.env, job.federation_id, job.round);
    const refusal = federationRefusal(this.env, job.federation_id) ?? roundRefusal(this.env, job.federation_id, job.round, round);
    if (refusal) throw new Error(refusal.message);
    const limit = ownerLimits(this.env).MAX_DOWNLOAD_BYTES;
    const tooLarge = (what: string, left: number) => (size: string) =>
      `${what} is ${size}, over the ${left} bytes left of this client's MAX_DOWNLOAD_BYTES (${limit}) for round ${job.round}: its owner raises MAX_DOWNLOAD_BYTES in its wrangler.toml [vars] to take this task`;
    const task: ClientTask = {
      round: job.round,
      proximalMu: round.task.proximalMu,
      local: round.task.local,
      method: round.task.method,
      quant: round.task.model.quant,
      modelName: round.task.model.name,
      seed: hashSeed(`${job.federation_id}/${this.env.CLIENT_ID}`),
      federationSeed: round.task.seed,
      baseVersion: round.baseVersion,
    };
    let start: Uint8Array;
    if (task.method.type === "fedkseed") {
      const synced = await this.syncSeeds(
        job.federation_id,
        { ...task, method: task.method },
        round.baseVersion,
        scoredAtEndpoint(this.env, task.method),
        limit,
        tooLarge,
      );
      // At an endpoint the start is the global model as seed terms; locally, its tensors.
      start = synced.params
        ? encodeTensorFile(synced.params, new Map())
        : encodeTensorFile(new Map(), new Map(), { format: "pt", terms: JSON.stringify(synced.terms) });
      task.downloadBytes = synced.bytes;
    } else {
      const version = await coordinatorFetch(
        this.env,
        `/federations/${encodeURIComponent(job.federation_id)}/versions/${round.baseVersion}`,
      );
      if (!version.ok) throw await failure(`fetching adapter version ${round.baseVersion}`, version);
      start = await readResponse(version, limit, tooLarge(`version ${round.baseVersion}`, limit));
      task.downloadBytes = start.length;
    }
    this.ctx.storage.transactionSync(() => {
      writeBlob(this.sql, key("global"), start);
      this.sql.exec(
        "UPDATE jobs SET status = 'training', task = ?, updated_at = ? WHERE federation_id = ? AND round = ?",
        JSON.stringify(task),
        Date.now(),
        job.federation_id,
        job.round,
      );
    });
  }

  /**
   * FedKSeed: brings this client's copy of the global model (kept per federation, with the version it is
   * at) to `version` by applying each later round's sparse per-seed change, and records those changes as
   * the seeds' history (FedKSeed-Pro). Only the rounds it missed cross the wire. A client whose model
   * lives at an endpoint keeps only the history; its model is the terms the cumulative scalars make.
   */
  private async syncSeeds(
    federationId: string,
    task: ZoTask,
    version: number,
    atEndpoint: boolean,
    limit: number,
    tooLarge: (what: string, left: number) => (size: string) => string,
  ): Promise<{ params: TensorMap | null; terms: SeedTerms; bytes: number }> {
    const cacheKey = `zo/${federationId}`;
    const saved = readBlob(this.sql, cacheKey);
    const cached = saved ? decodeTensorFile(saved, "FedKSeed model") : null;
    // A cache written at an endpoint holds no tensors: a local client starts over from w0.
    const usable = cached !== null && Number(cached.metadata.version) <= version && (atEndpoint || cached.tensors.size > 0);
    const at = usable ? Number(cached.metadata.version) : 0;
    const initial = async () =>
      atEndpoint ? null : (({ model }) => zoInitial(model.config, model.weights, task.method, task.federationSeed))(await this.load(task));
    let bytes = 0;
    const change: SeedChange = async (v, since) => {
      const res = await coordinatorFetch(this.env, `/federations/${encodeURIComponent(federationId)}/versions/${v}/seeds?since=${since}`);
      if (res.status === 404) return null;
      if (!res.ok) throw await failure(`fetching the seed changes of version ${v} since ${since}`, res);
      const diff = await readResponse(res, limit - bytes, tooLarge(`the seed changes of version ${v}`, limit - bytes));
      bytes += diff.length;
      return decodeSeedSums(diff, task.method.k, `version ${v}`).sums;
    };
    const sync = await seedChangesTo(change, at, version);
    const fresh = sync.fromScratch || at === 0;
    let params: TensorMap | null = fresh ? await initial() : atEndpoint ? null : cached!.tensors;
    const byIndex = new Map(fresh ? [] : (JSON.parse(cached!.metadata.history ?? "[]") as [number, number[]][]));
    for (const sums of sync.changes) {
      if (params) params = zoGlobal(params, task, sums);
      for (const [j, v] of sums) byIndex.set(j, [...(byIndex.get(j) ?? []), v]);
    }
    writeBlob(
      this.sql,
      cacheKey,
      encodeTensorFile(params ?? new Map(), new Map(), { format: "pt", version: String(version), history: JSON.stringify([...byIndex]) }),
    );
    const cumulative = new Map([...byIndex].map(([j, vs]) => [j, vs.reduce((a, b) => a + b, 0)]));
    return { params, terms: globalTerms(seedPool(task.federationSeed, task.method.k), cumulative, task.local.lr), bytes };
  }

  /** FedKSeed-Pro's history: each seed's per-round aggregated scalars, as this client has seen them. */
  private seedHistory(federationId: string, k: number): number[][] | undefined {
    const saved = readBlob(this.sql, `zo/${federationId}`);
    if (!saved) return undefined;
    // Only the metadata: the model's tensors in the same blob are not needed here.
    const byIndex = new Map(JSON.parse(readSafetensorsHeader(saved).metadata.history ?? "[]") as [number, number[]][]);
    return Array.from({ length: k }, (_, j) => byIndex.get(j) ?? []);
  }

  private saveProgress(job: JobRow, key: (what: string) => string, state: Uint8Array, step: number): void {
    this.ctx.storage.transactionSync(() => {
      writeBlob(this.sql, key("state"), state);
      this.sql.exec(
        "UPDATE jobs SET steps_done = ?, updated_at = ? WHERE federation_id = ? AND round = ?",
        step,
        Date.now(),
        job.federation_id,
        job.round,
      );
    });
  }

  /** The tokenizer and the partition alone: what a client that scores at an API needs. */
  private async loadTokenizer() {
    const source = r2ModelSource(this.env);
    this.prompts ??= {
      tokenizer: await loadModelTokenizer(source),
      config: await loadConfig(source),
      raw: await loadPartition(this.env),
      tokenized: new Map(),
    };
    return this.prompts;
  }

  /** The tokenizer and the partition tokenized, without weights: a client whose model lives at an endpoint. */
  private async loadTokenized(task: Pick<ClientTask, "local">) {
    const p = await this.loadTokenizer();
    const maxTokens = task.local.maxTokens;
    if (!p.tokenized.has(maxTokens)) p.tokenized.set(maxTokens, tokenizePartition(p.raw, p.tokenizer, p.config, maxTokens));
    return { tokenizer: p.tokenizer, examples: p.tokenized.get(maxTokens)! };
  }

  /** The model's layers the method runs (and no others), and the tokenized partition. */
  private async load(task: Pick<ClientTask, "method" | "local">) {
    const source = r2ModelSource(this.env);
    const config = this.cache?.model.config ?? (await loadConfig(source));
    const layers = loadedLayers(task.method, config, isOffloaded(this.env, task.method));
    const key = JSON.stringify([task.local.maxTokens, layers ?? "all"]);
    if (this.cache?.key !== key) {
      const model = await loadModel(source, layers ? { layers } : {});
      const raw = await loadPartition(this.env);
      this.cache = { model, examples: tokenizePartition(raw, model.tokenizer, model.config, task.local.maxTokens), raw, key };
    }
    return this.cache;
  }

  private async releaseSessions(job: string): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.release()));
    this.sessions.clear();
    this.sessionsJob = job;
  }

  /** Trunk states kept in this object's SQLite, so later rounds and epochs ask the endpoint nothing. */
  private trunkCache(): TrunkCache {
    return {
      get: async (key) => {
        const bytes = readBlob(this.sql, `trunk/${key}`);
        return bytes ? new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) : null;
      },
      put: async (key, states) => writeBlob(this.sql, `trunk/${key}`, new Uint8Array(states.buffer, states.byteOffset, states.byteLength)),
    };
  }

  private fail(job: JobRow, detail: string): void {
    this.sql.exec(
      "UPDATE jobs SET status = 'failed', detail = ?, updated_at = ? WHERE federation_id = ? AND round = ?",
      detail,
      Date.now(),
      job.federation_id,
      job.round,
    );
  }
}

/** A partition's records as token ids (EOS after each text or completion), cut to maxTokens and the model's context. */
function tokenizePartition(raw: readonly Example[], tok: TextTokenizer, config: LlamaConfig, maxTokens: number): TokenizedExample[] {
  const eos = config.eosTokenIds[0] ?? 0;
  return raw.map((e) => tokenizeExample(e, tok, eos, Math.min(maxTokens, config.maxPositions)));
}

/** A stable 32-bit seed from a string (FNV-1a), so a client's dropout and batch order are reproducible. */
function hashSeed(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
