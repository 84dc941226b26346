// A client's trainer: one Durable Object per federation in the client's own deployment. It keeps each
// round's job and its resumable local state in SQLite (jobs.ts) and advances it from alarms, a bounded
// number of steps per invocation, so local training never outlives a Worker's CPU budget and survives
// eviction. The round's work is its method's (src/fl/methods/<name>/client.ts), in slices.
import { DurableObject } from "cloudflare:workers";
import { ortHeapBytes } from "../lib/ort-workerd.ts";
import { HTTPException } from "hono/http-exception";
import { deleteBlob, readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { TransientError } from "../../src/fl/client/transient.ts";
import { attemptUpload, MAX_UPLOAD_ATTEMPTS, uploadRequest, uploadRetryDelayMs } from "../../src/fl/client/upload.ts";
import { clientMethods } from "../../src/fl/methods/client.ts";
import type { ClientTask } from "../../src/fl/methods/method.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { bodyDigest } from "../../src/protocol/signature.ts";
import { hashSeed } from "../../src/engine/sampling.ts";
import { attackedUpload } from "./attack-step.ts";
import type { ClientEnv } from "./env.ts";
import { evaluateVersions } from "./evaluation.ts";
import { CoordinatorAnswerError, type EvaluationTask } from "../../src/protocol/member-views.ts";
import { type JobRow, Jobs, type JobView, jobBlobKey } from "./jobs.ts";
import { federationRefusal, ownerLimits, roundRefusal } from "./policy.ts";
import { downloads, ModelCache } from "./resources.ts";
import { type SecureStep, SecureSteps } from "./secure-steps.ts";
import { coordinatorFetch, placementOf, readRound } from "./sources.ts";

export type { JobView } from "./jobs.ts";

/** A job's slices may meet this many transient failures in a row, retried with backoff (1 s, 2 s, ... 32 s), before it fails. */
export const MAX_SLICE_RETRIES = 6;

export class ClientTrainer extends DurableObject<ClientEnv> {
  private readonly sql: SqlStorage;
  private readonly jobs: Jobs;
  private readonly cache = new ModelCache();
  private readonly secure: SecureSteps;
  /** When this object last sent a progress heartbeat (at most one every HEARTBEAT_MS). */
  private lastHeartbeat = 0;

  constructor(ctx: DurableObjectState, env: ClientEnv) {
    super(ctx, env);
    this.jobs = new Jobs(ctx.storage);
    this.sql = ctx.storage.sql;
    this.secure = new SecureSteps(env, this.sql);
  }

  /** Federated evaluation: scores and reports the versions asked of this client (evaluation.ts); returns those reported. */
  evaluate(federationId: string, versions: number[], task: EvaluationTask): Promise<number[]> {
    return evaluateVersions(this.env, this.sql, this.cache, federationId, versions, task);
  }

  /** Queues a round's job of the federation created at `createdAt` (idempotent) and wakes the alarm to work on it. */
  async start(federationId: string, round: number, createdAt: number): Promise<JobView> {
    this.jobs.queue(federationId, round, createdAt);
    await this.ctx.storage.setAlarm(Date.now());
    return this.jobs.view(federationId, round)!;
  }

  job(federationId: string, round: number): JobView | null {
    const view = this.jobs.view(federationId, round);
    return view && { ...view, wasmHeapBytes: ortHeapBytes() };
  }

  /**
   * The upload this client made for a round (safetensors), for its owner's own code and tests (RPC on the
   * binding): no route of the worker serves it.
   */
  delta(federationId: string, round: number): Uint8Array | null {
    return readBlob(this.sql, `delta/${federationId}/${round}`);
  }

  override async alarm(): Promise<void> {
    const job = this.jobs.next();
    if (!job) return;
    try {
      const more = await this.advance(job);
      if (job.retries > 0) this.jobs.update(job, { retries: 0 });
      if (more !== null) await this.ctx.storage.setAlarm(Date.now() + more);
    } catch (e) {
      const message = (e as Error).message;
      // A 502 of the coordinator's own is retried; its answer that did not parse would not parse again.
      const transient =
        e instanceof TransientError || (e instanceof HTTPException && e.status === 502 && !(e.cause instanceof CoordinatorAnswerError));
      if (transient && job.retries < MAX_SLICE_RETRIES) {
        this.jobs.update(job, { retries: job.retries + 1, detail: `retry ${job.retries + 1} of ${MAX_SLICE_RETRIES}: ${message}` });
        await this.ctx.storage.setAlarm(Date.now() + 1000 * 2 ** job.retries);
        return;
      }
      this.jobs.update(job, { status: "failed", detail: message });
      await this.ctx.storage.setAlarm(Date.now());
    }
  }

  /**
   * One slice of work; returns the delay before the next slice, or null when the job is finished. A secure
   * round's steps (secure-steps.ts) come between: advertise and share keys before training, mask the update
   * once made, upload the masked input, then answer the unmask request.
   */
  private async advance(job: JobRow): Promise<number | null> {
    const key = (what: string) => jobBlobKey(job, what);
    const made = readBlob(this.sql, key("delta"));
    if (made) return job.secure_step === null ? this.upload(job, made) : this.secureAfterTraining(job, made, key);
    const honest = readBlob(this.sql, key("honest"));
    if (honest) return this.attack(job, honest, key);
    if (!job.task) {
      await this.prepare(job, key);
      return 0;
    }
    if (job.secure_step === "pending") return this.stepped(job, await this.secure.advertise(job));
    if (job.secure_step === "advertised") return this.stepped(job, await this.secure.share(job));
    const task = JSON.parse(job.task) as ClientTask;
    const { side, config } = clientMethods.parse(task.method);
    const limit = ownerLimits(this.env).MAX_DOWNLOAD_BYTES;
    const body = await side.slice({
      task: { ...task, method: config },
      placement: placementOf(this.env, side, config),
      global: decodeTensorFile(readBlob(this.sql, key("global"))!, "global"),
      saved: readBlob(this.sql, key("state")),
      perInvocation: Number(this.env.STEPS_PER_INVOCATION ?? "8"),
      save: (state, step) =>
        this.ctx.storage.transactionSync(() => {
          writeBlob(this.sql, key("state"), state);
          this.jobs.update(job, { steps_done: step });
        }),
      resources: this.cache.resources(
        this.env,
        this.sql,
        { federationId: job.federation_id, createdAt: task.federationCreatedAt, key: key("job") },
        downloads(this.env, limit - task.downloadBytes, job.round).get,
      ),
    });
    if (body === null) {
      await this.heartbeat(job, task);
      return 0;
    }
    if (!this.env.ATTACK) return this.made(job, body, key);
    this.ctx.storage.transactionSync(() => {
      writeBlob(this.sql, key("honest"), body);
      for (const k of ["global", "state"]) deleteBlob(this.sql, key(k));
    });
    return 0;
  }

  /**
   * Tells the coordinator how far the round's training is (its steps done of the local steps planned), at
   * most every HEARTBEAT_MS; best effort: a heartbeat that fails changes nothing of the job.
   */
  private async heartbeat(job: JobRow, task: ClientTask): Promise<void> {
    const now = Date.now();
    if (now - this.lastHeartbeat < HEARTBEAT_MS) return;
    this.lastHeartbeat = now;
    const stepsDone = this.jobs.view(job.federation_id, job.round)?.stepsDone ?? 0;
    const report = { stepsDone: Math.min(stepsDone, task.local.steps), steps: task.local.steps };
    await coordinatorFetch(
      this.env,
      `/federations/${encodeURIComponent(job.federation_id)}/rounds/${job.round}/progress/${this.env.CLIENT_ID}`,
      {
        method: "PUT",
        body: new TextEncoder().encode(JSON.stringify(report)),
        headers: { "content-type": "application/json" },
      },
    ).catch(() => undefined);
  }

  /** A benchmark attacker's round (the ATTACK binding): its upload made from the honest one, once it can be. */
  private async attack(job: JobRow, honest: Uint8Array, key: (what: string) => string): Promise<number | null> {
    const body = await attackedUpload(this.env, job.federation_id, job.round, honest);
    if (body) return this.made(job, body, key);
    if (job.detail !== "waiting for the colluders' honest updates")
      this.jobs.update(job, { detail: "waiting for the colluders' honest updates" });
    return 1000;
  }

  /** Keeps the round's upload (its update, or a secure round's plain delta to mask) and sends it. */
  private async made(job: JobRow, body: Uint8Array, key: (what: string) => string): Promise<number | null> {
    // Kept before the first attempt: every retry sends these same bytes under the same idempotency key.
    const metrics = readSafetensorsHeader(body).metadata.metrics ?? "{}";
    const sha256 = await bodyDigest(body);
    this.ctx.storage.transactionSync(() => {
      writeBlob(this.sql, key("delta"), body);
      for (const k of ["global", "state", "honest"]) deleteBlob(this.sql, key(k));
      this.jobs.update(job, { upload_bytes: body.length, upload_sha256: sha256, upload_metrics: metrics });
    });
    return job.secure_step === null ? this.upload(job, body) : 0;
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
        // A secure round's job goes on to its unmask step.
        this.jobs.update(job, job.secure_step === null ? { status: "uploaded", detail } : { secure_step: "sent", detail });
      });
      return job.secure_step === null ? null : 0;
    }
    const attempts = job.attempts + 1;
    if (outcome === "refused" || attempts >= MAX_UPLOAD_ATTEMPTS)
      throw new Error(`upload ${outcome === "refused" ? "refused" : `failed after ${attempts} attempts`}: ${detail}`);
    this.jobs.update(job, { attempts, detail: `upload attempt ${attempts} of ${MAX_UPLOAD_ATTEMPTS}: ${detail}` });
    return uploadRetryDelayMs(job.attempts);
  }

  /**
   * Reads the round's task, refuses it unless this client takes it (listed federation, open round that
   * sampled it, within the owner's limits), and stores what the job starts from: its method's start
   * (FedKSeed: the model rebuilt from the seed changes it missed), by default the base version. What it
   * downloads is capped by MAX_DOWNLOAD_BYTES as it reads.
   */
  private async prepare(job: JobRow, key: (what: string) => string): Promise<void> {
    const round = await readRound(this.env, job.federation_id, job.round);
    const refusal = federationRefusal(this.env, job.federation_id) ?? roundRefusal(this.env, job.federation_id, job.round, round);
    if (refusal) throw new Error(refusal.message);
    if (round.phase !== null && round.phase !== "advertise")
      throw new Error(
        `round ${job.round} of "${job.federation_id}" is secure and past its advertise phase (${round.phase}): too late to join`,
      );
    const { side, config } = clientMethods.parse(round.task.method);
    const task: ClientTask = {
      federationId: job.federation_id,
      clientId: this.env.CLIENT_ID,
      round: job.round,
      proximalMu: round.task.proximalMu,
      local: round.task.local,
      method: config,
      quant: round.task.model.quant,
      modelName: round.task.model.name,
      seed: hashSeed(`${job.federation_id}/${this.env.CLIENT_ID}`),
      federationSeed: round.task.seed,
      federationCreatedAt: round.task.createdAt,
      baseVersion: round.baseVersion,
      downloadBytes: 0,
      ...(round.task.uploadDtype ? { uploadDtype: round.task.uploadDtype } : {}),
      ...(round.task.downloadDtype ? { downloadDtype: round.task.downloadDtype } : {}),
      ...(round.task.topK !== undefined ? { topK: round.task.topK } : {}),
      ...(this.env.ADAPTER_RANK !== undefined ? { maxRank: adapterRank(this.env.ADAPTER_RANK) } : {}),
    };
    const budget = downloads(this.env, ownerLimits(this.env).MAX_DOWNLOAD_BYTES, job.round);
    const placement = placementOf(this.env, side, config);
    const own = side.start
      ? await side.start(
          task,
          placement,
          this.cache.resources(
            this.env,
            this.sql,
            { federationId: job.federation_id, createdAt: task.federationCreatedAt, key: key("job") },
            budget.get,
          ),
        )
      : null;
    let start: Uint8Array;
    if (own) start = own.start;
    else {
      const dtype = round.task.downloadDtype && round.task.downloadDtype !== "F32" ? `?dtype=${round.task.downloadDtype}` : "";
      const path = `/federations/${encodeURIComponent(job.federation_id)}/versions/${round.baseVersion}${dtype}`;
      const version = await budget.get(path, `version ${round.baseVersion}`);
      if (!version) throw new Error(`the coordinator has no version ${round.baseVersion} of "${job.federation_id}"`);
      start = version;
    }
    task.downloadBytes = budget.spent();
    this.ctx.storage.transactionSync(() => {
      writeBlob(this.sql, key("global"), start);
      this.jobs.update(job, { status: "training", task: JSON.stringify(task), secure_step: round.phase === null ? null : "pending" });
    });
  }

  /** A secure step's outcome stored with the job: the next slice at once, or after the wait for a phase. */
  private stepped(job: JobRow, o: { step: SecureStep | null; wait: number; detail: string | null }): number {
    if (o.step) {
      this.secure.stepDone(job);
      this.jobs.update(job, { secure_step: o.step, detail: o.detail });
    } else if (o.detail !== job.detail) this.jobs.update(job, { detail: o.detail });
    return o.wait;
  }

  /**
   * A secure round after training: the update masked once the input phase opens (kept, so retries send the
   * same bytes), uploaded, then the unmask answer; the job is done once that is sent.
   */
  private async secureAfterTraining(job: JobRow, update: Uint8Array, key: (what: string) => string): Promise<number | null> {
    if (job.secure_step === "shared") {
      const o = await this.secure.mask(job, update);
      if (!o.body) return this.stepped(job, o);
      const { body, secrets } = o as { body: Uint8Array; secrets: string };
      this.secure.stepDone(job);
      const sha256 = await bodyDigest(body);
      this.ctx.storage.transactionSync(() => {
        this.secure.keep(job, secrets);
        writeBlob(this.sql, key("masked"), body);
        this.jobs.update(job, { secure_step: "masked", upload_bytes: body.length, upload_sha256: sha256 });
      });
      return 0;
    }
    if (job.secure_step === "masked") return this.upload(job, readBlob(this.sql, key("masked"))!);
    const o = await this.secure.unmask(job);
    if (!o.step) return this.stepped(job, o);
    this.ctx.storage.transactionSync(() => {
      deleteBlob(this.sql, key("masked"));
      this.secure.forget(job);
      this.jobs.update(job, { status: "uploaded", secure_step: o.step, detail: o.detail });
    });
    return null;
  }
}

/** The least time between two progress heartbeats of a client (the coordinator takes one every 2 s). */
const HEARTBEAT_MS = 5000;

/** ADAPTER_RANK as a rank: a positive integer, or the job fails naming the setting. */
function adapterRank(raw: string): number {
  const r = Number(raw);
  if (!/^\d{1,4}$/.test(raw) || r < 1) throw new Error(`ADAPTER_RANK must be a positive integer, not "${raw.slice(0, 20)}"`);
  return r;
}
