// A whole federation on this machine, in workerd through Miniflare: the coordinator with its aggregator
// Durable Object, and one client worker per data owner, each with its own R2 data partition, the model
// in R2 and its own trainer Durable Object. Storage persists under `stateDir`, so a restart resumes.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare, type MiniflareOptions } from "miniflare";
import type { ClientAttack } from "../src/fl/attacks/model-poisoning.ts";
import type { Example } from "../src/data/jsonl.ts";
import { toHex } from "../src/protocol/hex.ts";
import { bearer } from "../src/protocol/bearer.ts";
import { deriveClientSecret, OPERATOR_ID, signRequest } from "../src/protocol/signature.ts";
import { bundleWorker } from "./bundle-worker.ts";
import { descendants, listenerOf } from "./process-tree.ts";

export interface LocalClient {
  id: string;
  partition: readonly Example[];
  /** A model attack this client's worker applies to its uploads (benchmarks of the robust rules only). */
  attack?: ClientAttack;
  /** Its held-out split (heldout.jsonl in its DATA bucket), which it scores the versions asked of it on. */
  heldOut?: readonly Example[];
}

export interface LocalFederationOptions {
  stateDir: string;
  masterKey: string;
  /** The coordinator's operator and viewer bearer tokens (FEDFLARE_OPERATOR_TOKEN, FEDFLARE_VIEWER_TOKEN); random when not given. */
  operatorToken?: string;
  viewerToken?: string;
  clients: readonly LocalClient[];
  /** Model files (Hugging Face layout), put in the MODEL bucket under "model/". */
  modelFiles: ReadonlyMap<string, string | Uint8Array>;
  /** Federation ids the clients pull open rounds of on their cron. */
  federations?: readonly string[];
  stepsPerInvocation?: number;
  /** An inference endpoint serving the frozen trunk to split clients. */
  trunkUrl?: string;
  /** An OpenAI-compatible API (base URL ending in /v1) discrete-prompt clients score at. */
  completionsUrl?: string;
  /** The bearer token of the endpoint at trunkUrl / completionsUrl (TRUNK_TOKEN, OPENAI_API_KEY). */
  endpointToken?: string;
  /**
   * The wrangler configs bundled for the coordinator and the clients (default: the project's own). A
   * deployment with methods of its own points these at entries that register them.
   */
  workerConfigs?: { coordinator: string; client: string };
}

type Init = { method?: string; body?: string | Uint8Array; headers?: Record<string, string> };

export class LocalFederation {
  private mf: Miniflare;
  private readonly options: MiniflareOptions;
  /** Where the coordinator answers HTTP (its dashboard at /). */
  url: URL;

  readonly operatorToken: string;
  readonly viewerToken: string;
  /** The master key: client() signs as the operator with the secret it derives for each client. */
  private readonly masterKey: string;

  private constructor(mf: Miniflare, options: MiniflareOptions, url: URL, tokens: { operator: string; viewer: string }, masterKey: string) {
    this.mf = mf;
    this.options = options;
    this.url = url;
    this.operatorToken = tokens.operator;
    this.viewerToken = tokens.viewer;
    this.masterKey = masterKey;
  }

  static async start(o: LocalFederationOptions): Promise<LocalFederation> {
    const tokens = { operator: o.operatorToken ?? randomToken(), viewer: o.viewerToken ?? randomToken() };
    const [coordinatorDir, clientDir] = await Promise.all([
      bundleWorker(o.workerConfigs?.coordinator ?? "wrangler.toml"),
      bundleWorker(o.workerConfigs?.client ?? "workers/client/wrangler.toml"),
    ]);
    // Colluding attackers share one object, held by the first of them.
    const collusionHost = o.clients.find((c) => c.attack?.type === "alie")?.id;
    const options = convertV4MiniflareOptions({
      resourcePersistencePath: o.stateDir,
      workers: [
        coordinatorWorker(coordinatorDir, o.masterKey, tokens),
        ...(await Promise.all(
          o.clients.map((c) =>
            clientWorker(clientDir, c.id, o.masterKey, { ...o, coordinator: "coordinator", attack: c.attack, collusionHost }),
          ),
        )),
      ],
    });
    const mf = new Miniflare(options);
    const fed = new LocalFederation(mf, options, await mf.ready, tokens, o.masterKey);
    const firstClient = o.clients[0];
    if (firstClient) await fillBuckets(mf, firstClient.id, o.modelFiles, null);
    for (const c of o.clients) await fillBuckets(mf, c.id, null, c.partition, c.heldOut);
    return fed;
  }

  /** A request to the coordinator as the operator (its bearer token added unless the request names another). */
  async coordinator(path: string, init: Init = {}): Promise<Response> {
    return this.dispatch("coordinator", `http://coordinator${path}`, {
      ...init,
      headers: { ...bearer(this.operatorToken), ...init.headers },
    });
  }

  /** A request to a client worker, signed by the operator (headers the request names override the signature's). */
  async client(id: string, path: string, init: Init = {}): Promise<Response> {
    const body = typeof init.body === "string" ? new TextEncoder().encode(init.body) : init.body;
    const signed = await signRequest(await deriveClientSecret(this.masterKey, id), OPERATOR_ID, init.method ?? "GET", path, body);
    return this.dispatch(`client-${id}`, `http://client${path}`, { ...init, headers: { ...signed, ...init.headers } });
  }

  /**
   * A request to a worker, sent again when the connection to workerd was found closed before it was
   * written (EPIPE, ECONNRESET): while a Durable Object computes for many seconds (a training slice),
   * workerd drops idle connections, and the next request on one fails without having been delivered.
   */
  private async dispatch(worker: string, url: string, init?: Init): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await (await this.mf.getWorker(worker)).fetch(url, init)) as unknown as Response;
      } catch (e) {
        const code = (e as { cause?: { code?: string } }).cause?.code;
        if (attempt >= 3 || (code !== "EPIPE" && code !== "ECONNRESET")) throw e;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  /**
   * A Durable Object of one of the workers, by binding and name, over Miniflare's proxy: for tests and
   * local inspection (a client's trainer holds what it uploaded, which no route hands out).
   */
  async durableObject(worker: string, binding: string, name: string): Promise<unknown> {
    const ns = await this.mf.getDurableObjectNamespace(binding, worker);
    return ns.get(ns.idFromName(name));
  }

  /** Runs a client's cron handler (it pulls open rounds it was sampled for). */
  async cron(id: string): Promise<void> {
    await (await this.mf.getWorker(`client-${id}`)).scheduled({ cron: "* * * * *" });
  }

  /** Stops workerd and starts it again on the persisted storage. */
  async restart(): Promise<void> {
    await this.mf.dispose();
    this.mf = new Miniflare(this.options);
    this.url = await this.mf.ready;
  }

  /**
   * Kills workerd with SIGKILL wherever it is (mid-request, mid-write), keeps it down for `downMs`, then
   * starts it again on the persisted storage: a crash, where restart() stops it between requests.
   */
  async crash(downMs = 0): Promise<void> {
    const workerd = listenerOf(Number(this.url.port), descendants(process.pid, "workerd"));
    if (!workerd) throw new Error(`no workerd process below ${process.pid} listens on ${this.url.host} (crash() reads Linux /proc)`);
    process.kill(workerd.pid, "SIGKILL");
    // Disposed before Node sees the exit, so Miniflare does not restart the runtime itself; with workerd
    // already dead this only closes this process's side (its loopback server, connections, the exit's reaping).
    await this.mf.dispose();
    await new Promise((r) => setTimeout(r, downMs));
    this.mf = new Miniflare(this.options);
    this.url = await this.mf.ready;
  }

  dispose(): Promise<void> {
    return this.mf.dispose();
  }
}

/** The coordinator worker with its aggregator Durable Object, from its bundle. */
export function coordinatorWorker(dir: string, masterKey: string, tokens: { operator: string; viewer: string }) {
  return {
    name: "coordinator",
    ...modulesOf(dir),
    compatibilityDate: "2026-11-01",
    durableObjects: { AGGREGATOR: { className: "Aggregator", useSQLite: true } },
    r2Buckets: { VERSIONS: "versions" },
    bindings: { FEDFLARE_MASTER_KEY: masterKey, FEDFLARE_OPERATOR_TOKEN: tokens.operator, FEDFLARE_VIEWER_TOKEN: tokens.viewer },
  };
}

/** What a client worker is bound to besides its identity: its coordinator and the endpoints it was given. */
export type ClientBindings = Pick<
  LocalFederationOptions,
  "federations" | "stepsPerInvocation" | "trunkUrl" | "completionsUrl" | "endpointToken"
> & {
  /** The coordinator: a worker of the same Miniflare instance by name, or a URL (one in another workerd process). */
  coordinator: string | URL;
  attack?: ClientAttack;
  /** The client whose worker holds the colluders' object, when some clients collude ("a little is enough"). */
  collusionHost?: string;
};

/** A client worker named `client-<id>` with its own buckets (MODEL, DATA) and trainer Durable Object, from its bundle. */
export async function clientWorker(dir: string, id: string, masterKey: string, o: ClientBindings) {
  return {
    name: `client-${id}`,
    ...modulesOf(dir),
    compatibilityDate: "2026-11-01",
    durableObjects: {
      TRAINER: { className: "ClientTrainer", useSQLite: true },
      ...(o.attack?.type === "alie"
        ? { COLLUSION: { className: "Collusion", scriptName: `client-${o.collusionHost}`, useSQLite: true } }
        : {}),
    },
    r2Buckets: { MODEL: "models", DATA: `data-${id}` },
    ...(typeof o.coordinator === "string" ? { serviceBindings: { COORDINATOR: o.coordinator } } : {}),
    bindings: {
      CLIENT_ID: id,
      CLIENT_SECRET: await deriveClientSecret(masterKey, id),
      MODEL_PREFIX: "model/",
      STEPS_PER_INVOCATION: String(o.stepsPerInvocation ?? 8),
      FEDERATIONS: (o.federations ?? []).join(","),
      ...(typeof o.coordinator === "string" ? {} : { COORDINATOR_URL: o.coordinator.href }),
      ...(o.trunkUrl ? { TRUNK_URL: o.trunkUrl } : {}),
      ...(o.completionsUrl ? { OPENAI_BASE_URL: o.completionsUrl } : {}),
      ...(o.endpointToken ? { TRUNK_TOKEN: o.endpointToken, OPENAI_API_KEY: o.endpointToken } : {}),
      ...(o.attack ? { ATTACK: JSON.stringify(o.attack) } : {}),
    },
  };
}

/** Puts the model folder's files in a client's MODEL bucket (under model/), its partition and held-out split in its DATA bucket. */
export async function fillBuckets(
  mf: Miniflare,
  client: string,
  modelFiles: ReadonlyMap<string, string | Uint8Array> | null,
  partition: readonly Example[] | null,
  heldOut?: readonly Example[],
): Promise<void> {
  if (modelFiles) await putModelFiles(await mf.getR2Bucket("MODEL", `client-${client}`), modelFiles);
  const data = await mf.getR2Bucket("DATA", `client-${client}`);
  const jsonl = (xs: readonly Example[]) => xs.map((r) => JSON.stringify(r)).join("\n");
  if (partition) await data.put("partition.jsonl", jsonl(partition));
  if (heldOut?.length) await data.put("heldout.jsonl", jsonl(heldOut));
}

/**
 * Miniflare carries a put's body from Node as one string, which V8 caps at 512 MiB, so a file over
 * R2_PART is put in parts (an R2 multipart upload; parts but the last must be 5 MiB or more).
 */
async function putModelFiles(
  models: Awaited<ReturnType<Miniflare["getR2Bucket"]>>,
  files: ReadonlyMap<string, string | Uint8Array>,
): Promise<void> {
  for (const [name, content] of files) {
    const key = `model/${name}`;
    if (typeof content === "string" || content.length <= R2_PART) {
      await models.put(key, content);
      continue;
    }
    const upload = await models.createMultipartUpload(key);
    const parts = [];
    for (let at = 0; at < content.length; at += R2_PART)
      parts.push(await upload.uploadPart(parts.length + 1, content.subarray(at, at + R2_PART)));
    await upload.complete(parts);
  }
}

const R2_PART = 64 * 2 ** 20;

/** 32 random bytes as hex: a bearer token for one local run. */
export function randomToken(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

/**
 * A bundle's modules as wrangler wrote them, the main module first (the client's also holds the ORT .wasm), read
 * once per bundle: Miniflare is handed their contents, so a restart does not depend on the folder still being
 * there (a newer bundle replaces it, cli/bundle-worker.ts), and ten client workers share one copy of the .wasm.
 */
export function modulesOf(dir: string) {
  let modules = bundles.get(dir);
  if (!modules) {
    modules = readdirSync(dir)
      .filter((f) => f.endsWith(".js") || f.endsWith(".wasm"))
      .sort((a, b) => Number(b === "index.js") - Number(a === "index.js"))
      .map((f) => ({
        type: f.endsWith(".wasm") ? ("CompiledWasm" as const) : ("ESModule" as const),
        path: join(dir, f),
        contents: new Uint8Array(readFileSync(join(dir, f))),
      }));
    bundles.set(dir, modules);
  }
  return { modulesRoot: dir, modules };
}

/** Bundles read by modulesOf, by folder: a bundle's folder is written once (cli/bundle-worker.ts). */
const bundles = new Map<string, { type: "CompiledWasm" | "ESModule"; path: string; contents: Uint8Array }[]>();
