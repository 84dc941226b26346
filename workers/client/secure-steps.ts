// A client's part in a secure round (SecAgg+; docs/ARCHITECTURE.md, "Secure aggregation"), step by step
// from its trainer's alarms: advertise its keys when it prepares the job, share them once the round's share
// phase opens (before training), mask its update once the input phase opens, and answer the unmask request.
// Its secrets live in its own storage between steps (never sent); each step is a signed request to the
// coordinator, and a phase not open yet is waited for by the alarm.
import { deleteBlob, readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { parseSecAggView, type SecAggView } from "../../src/protocol/secure-aggregation.ts";
import { secureNormals } from "../../src/privacy/central-dp.ts";
import { secureUniform } from "../../src/privacy/secure-random.ts";
import {
  advertMessage,
  clientView,
  encodeForRound,
  loadSecrets,
  requestOf,
  rosterOf,
  roundOf,
  saveSecrets,
  sharesMessage,
  unmaskMessage,
} from "../../src/secagg/client.ts";
import { maskedInputFile } from "../../src/secagg/masked-update.ts";
import { advertise, advertOf, maskInput, shareKeys, unmask } from "../../src/secagg/protocol.ts";
import type { ClientEnv } from "./env.ts";
import { type JobRow, jobBlobKey } from "./jobs.ts";
import { coordinatorFetch } from "./sources.ts";
import { failure } from "../../src/fl/client/transient.ts";

/** A client's steps in a secure round, in order; each is stored with its job once done. */
export type SecureStep = "pending" | "advertised" | "shared" | "masked" | "sent" | "unmasked";

/**
 * How long a client waits before asking again whether the phase it needs has opened: 1 s, growing by half
 * each time up to 10 s, so clients that finished early do not keep the aggregator busy through a long phase.
 */
const PHASE_POLL_MS = 1000;
const PHASE_POLL_MAX_MS = 10_000;

/** What a step does now: done (go on at once), or wait for the round to reach a phase. */
type Outcome = { step: SecureStep | null; wait: number; detail: string | null };

export class SecureSteps {
  private readonly env: ClientEnv;
  private readonly sql: SqlStorage;
  /** Consecutive polls per job, in memory (an evicted instance starts again at 1 s). */
  private readonly polls = new Map<string, number>();

  constructor(env: ClientEnv, sql: SqlStorage) {
    this.env = env;
    this.sql = sql;
  }

  private path(job: JobRow, what = ""): string {
    const round = `/federations/${encodeURIComponent(job.federation_id)}/rounds/${job.round}`;
    return `${round}/secagg/${encodeURIComponent(this.env.CLIENT_ID)}${what}`;
  }

  /**
   * Phase 1, once the job is prepared: fresh keys and seed, kept before anything is sent, so a retry sends
   * the same advert (the coordinator answers it as the one it accepted).
   */
  async advertise(job: JobRow): Promise<Outcome> {
    if (!readBlob(this.sql, jobBlobKey(job, "secagg"))) {
      const { secrets } = await advertise(this.env.CLIENT_ID);
      this.keep(job, await saveSecrets(secrets));
    }
    await this.send(job, "/advert", advertMessage(await advertOf(await this.secrets(job))));
    return { step: "advertised", wait: 0, detail: null };
  }

  /**
   * Phase 2, before training: once the share phase opens, the sealed shares for the neighbours that
   * advertised, kept before they are sent: a retry sends the same message (new shares would be another).
   */
  async share(job: JobRow): Promise<Outcome> {
    const kept = readBlob(this.sql, jobBlobKey(job, "secagg-shares"));
    if (!kept) {
      const view = await this.view(job);
      if (view.phase === "advertise") return { step: null, wait: this.poll(job), detail: "waiting for the round's share phase" };
      if (view.phase !== "share") throw new Error(`the secure round moved to its ${view.phase} phase before this client shared its keys`);
      const sealed = await shareKeys(roundOf(view, this.env.CLIENT_ID), await this.secrets(job), rosterOf(view));
      writeBlob(this.sql, jobBlobKey(job, "secagg-shares"), new TextEncoder().encode(JSON.stringify(sharesMessage(sealed))));
    }
    await this.send(job, "/shares", JSON.parse(new TextDecoder().decode(readBlob(this.sql, jobBlobKey(job, "secagg-shares"))!)));
    return { step: "shared", wait: 0, detail: null };
  }

  /**
   * Phase 3, after training: once the input phase opens, the update (the method's body, the version's
   * tensors) encoded and masked, as a masked-input body for the upload and its retries, with the secrets
   * recording that the masks are spent: the caller keeps both in one transaction, so no second input is
   * ever masked and the one made is never lost.
   */
  async mask(job: JobRow, update: Uint8Array): Promise<Outcome & { body?: Uint8Array; secrets?: string }> {
    const view = await this.view(job);
    if (view.phase === "share") return { step: null, wait: this.poll(job), detail: "waiting for the round's input phase" };
    if (view.phase !== "input") throw new Error(`the secure round is in its ${view.phase} phase: too late for this client's input`);
    const { encoded: x, metadata } = encodeForRound(view, update, cryptoUniform, secureNormals);
    const secrets = await this.secrets(job);
    const y = await maskInput(roundOf(view, this.env.CLIENT_ID), clientView(view, secrets), x);
    return { step: "masked", wait: 0, detail: null, body: maskedInputFile(y, metadata), secrets: await saveSecrets(secrets) };
  }

  /**
   * Phase 4: once the unmask phase opens, the one share per neighbour the request asks for, kept with the
   * secrets that record the answer in one write before it is sent: a retry sends the same answer, and no
   * second answer (which could reveal the other share of a peer) is ever made.
   */
  async unmask(job: JobRow): Promise<Outcome> {
    if (!readBlob(this.sql, jobBlobKey(job, "secagg-unmask"))) {
      const view = await this.view(job);
      if (view.phase === "input") return { step: null, wait: this.poll(job), detail: "waiting for the round's unmask phase" };
      if (view.phase !== "unmask" || !view.request)
        return { step: "unmasked", wait: 0, detail: `the round is ${view.phase}; nothing to unmask` };
      const secrets = await this.secrets(job);
      const message = JSON.stringify(
        unmaskMessage(await unmask(roundOf(view, this.env.CLIENT_ID), clientView(view, secrets), requestOf(view))),
      );
      const saved = await saveSecrets(secrets);
      this.keep(job, saved, ["secagg-unmask", message]);
    }
    await this.send(job, "/unmask", JSON.parse(new TextDecoder().decode(readBlob(this.sql, jobBlobKey(job, "secagg-unmask"))!)));
    return { step: "unmasked", wait: 0, detail: null };
  }

  /** The wait before the next poll of this job's round (a step done starts again at 1 s). */
  private poll(job: JobRow): number {
    const key = jobBlobKey(job, "poll");
    const n = this.polls.get(key) ?? 0;
    this.polls.set(key, n + 1);
    return Math.min(PHASE_POLL_MAX_MS, Math.round(PHASE_POLL_MS * 1.5 ** n));
  }

  /** Forgets the job's polls once a step is done. */
  stepDone(job: JobRow): void {
    this.polls.delete(jobBlobKey(job, "poll"));
  }

  /** Keeps the secrets (and another of the round's blobs with them), in one synchronous write. */
  keep(job: JobRow, secrets: string, also?: [what: string, text: string]): void {
    writeBlob(this.sql, jobBlobKey(job, "secagg"), new TextEncoder().encode(secrets));
    if (also) writeBlob(this.sql, jobBlobKey(job, also[0]), new TextEncoder().encode(also[1]));
  }

  /** Forgets the round's secrets and kept messages once the client's part is done. */
  forget(job: JobRow): void {
    for (const what of ["secagg", "secagg-shares", "secagg-unmask"]) deleteBlob(this.sql, jobBlobKey(job, what));
  }

  private async secrets(job: JobRow) {
    const saved = readBlob(this.sql, jobBlobKey(job, "secagg"));
    if (!saved) throw new Error(`this client kept no secure-aggregation secrets for round ${job.round}`);
    return loadSecrets(new TextDecoder().decode(saved));
  }

  private async view(job: JobRow): Promise<SecAggView> {
    const res = await coordinatorFetch(this.env, this.path(job));
    if (!res.ok) throw await failure("reading the secure round", res);
    return parseSecAggView(await res.json());
  }

  /** Sends a key-phase message; a retry of one already accepted gets the same answer. */
  private async send(job: JobRow, what: string, message: object): Promise<void> {
    const res = await coordinatorFetch(this.env, this.path(job, what), {
      method: "PUT",
      body: new TextEncoder().encode(JSON.stringify(message)),
      headers: { "content-type": "application/json" },
    });
    if (!res.ok) throw await failure(`sending the ${what.slice(1)} message`, res);
  }
}

/** The encoding's stochastic rounding draws from the CSPRNG. */
const cryptoUniform = secureUniform();
