// A client's memory while it runs one task, measured in workerd: the client worker alone in its own
// Miniflare instance (one workerd process), the coordinator in another, so the process's resident set is
// the client's. The figure is the process's peak resident set (Linux VmHWM, reset through
// /proc/<pid>/clear_refs once the client is warm) less its resident set when idle: what the task added,
// isolate and WASM heap together (WASM memory never shrinks, so its peak stays resident). It counts more
// than the platform's 128 MB isolate limit does: V8 compiling onnxruntime's WASM code as the task first
// runs it (about 100 MiB for the 0.4 MB model of test/bench/workerd-memory.test.ts), and Miniflare's R2,
// which serves the client's buckets from the same process. Linux only (/proc).
// So a second figure is what the isolate itself holds, the measure of the 128 MB limit: its JS heap and
// the ArrayBuffers it owns, sampled through the V8 inspector (Runtime.getHeapUsage) every SAMPLE_MS,
// plus onnxruntime's WASM heap as the client reports it in its task status (wasmHeapBytes), read every
// POLL_MS. WASM memory never shrinks, so the isolate's peak is at most, over each poll, the largest JS
// sample since the previous poll plus the WASM heap at this one: the figure reported, an upper bound.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { bundleWorker } from "../../cli/bundle-worker.ts";
import { type ClientBindings, clientWorker, coordinatorWorker, fillBuckets, randomToken } from "../../cli/local-federation.ts";
import { descendants, hasProc, listenerOf } from "../../cli/process-tree.ts";
import type { Example } from "../../src/data/jsonl.ts";
import { initialAdapterRequest } from "../../src/fl/methods/offsite/supply.ts";
import { bearer } from "../../src/protocol/bearer.ts";
import { deriveClientSecret, OPERATOR_ID, signRequest } from "../../src/protocol/signature.ts";

/** One client task to measure: what the client's buckets hold and the federation whose round it trains. */
export interface ClientTaskSetup {
  /** The client's MODEL bucket: a Hugging Face folder's files (or a method's emulator). */
  modelFiles: ReadonlyMap<string, string | Uint8Array>;
  partition: readonly Example[];
  /** The federation's model (name, HF config, quant), method and local settings. */
  federation: { model: Record<string, unknown>; method: Record<string, unknown>; local: Record<string, unknown>; seed?: number };
  /** A version 0 the operator supplies (offsite-tuning's adapter). */
  initial?: Uint8Array;
  /** The client's endpoints (TRUNK_URL, OPENAI_BASE_URL) and local steps per invocation. */
  bindings?: Omit<ClientBindings, "coordinator" | "federations">;
}

/** A measured client during a federation: its rounds, then its figures. */
interface MeasuredClient {
  train(round: number): Promise<void>;
  result(): ClientMemory;
  dispose(): Promise<void>;
}

export interface ClientMemory {
  /** The workerd process's resident set once started and warm, MiB. */
  idleMiB: number;
  /** Its peak resident set during the task, MiB. */
  peakMiB: number;
  /** peakMiB less idleMiB: what the task added. */
  peakOverIdleMiB: number;
  /** How the peak was read: VmHWM after a reset, or VmRSS sampled every SAMPLE_MS where the reset is refused. */
  measure: "VmHWM" | "VmRSS sampled";
  /** The isolate's JS heap plus ArrayBuffers when idle, and its largest during the task, MiB (V8 inspector). */
  jsIdleMiB: number;
  jsPeakMiB: number;
  /** onnxruntime's WASM heap at the end of the task (its peak), MiB. */
  wasmHeapMiB: number;
  /** The isolate's peak, JS and WASM together (bounded from above as the header says): what the 128 MB limit counts. */
  isolatePeakMiB: number;
  stepsDone: number;
  uploadBytes: number;
  /** The bytes the client's uploads say it downloaded (its metrics' download_bytes). */
  downloadBytes: number;
  seconds: number;
  /**
   * A step's wall time once its sessions exist: the time from the first step's progress to the last's
   * over the steps between, in ms (null when a round saved its progress fewer than twice). A step's
   * progress is saved once per invocation, so this is per step only with STEPS_PER_INVOCATION 1, and
   * it is read every POLL_MS.
   */
  stepMs: number | null;
}

const SAMPLE_MS = 20;
const POLL_MS = 100;
const MASTER_KEY = "client-memory-master-key";
const CLIENT = "mem";

/** A /proc/<pid>/status field in MiB (the kernel reports kB). */
function statusMiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`));
  if (!line) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(line.split(/\s+/)[1]) / 1024;
}

/** Resets the process's VmHWM to its current resident set (clear_refs "5"); false where the kernel refuses. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return statusMiB(pid, "VmHWM") <= statusMiB(pid, "VmRSS") + 1;
  } catch {
    return false;
  }
}

/** A TCP port free now, for workerd's inspector. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** A worker's V8 isolate through workerd's inspector: its JS heap and ArrayBuffer bytes on demand. */
async function isolateOf(port: number, worker: string): Promise<{ bytes(): Promise<number>; close(): void }> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as { id: string; webSocketDebuggerUrl: string }[];
  const target = targets.find((t) => t.id.endsWith(`:${worker}`));
  if (!target) throw new Error(`workerd's inspector lists no worker "${worker}"`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve);
    ws.addEventListener("error", reject);
  });
  const pending = new Map<number, (result: { usedSize: number; backingStorageSize?: number }) => void>();
  ws.addEventListener("message", (e) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: { usedSize: number; backingStorageSize?: number } };
    if (m.id !== undefined && m.result) pending.get(m.id)?.(m.result);
    if (m.id !== undefined) pending.delete(m.id);
  });
  let id = 0;
  return {
    bytes: () =>
      new Promise((resolve) => {
        pending.set(++id, (r) => resolve(r.usedSize + (r.backingStorageSize ?? 0)));
        ws.send(JSON.stringify({ id, method: "Runtime.getHeapUsage" }));
      }),
    close: () => ws.close(),
  };
}

/** The workerd process serving a Miniflare instance: the one of this process's descendants listening on its port. */
function workerdOf(url: URL): number {
  const p = listenerOf(Number(url.port), descendants(process.pid, "workerd"));
  if (!p) throw new Error(`no workerd process below ${process.pid} listens on ${url.host}`);
  return p.pid;
}

/**
 * Measures client tasks one at a time: the coordinator runs for the meter's life, each task gets a
 * fresh client process (so no task starts from another's heap) and a federation of its own.
 */
export class ClientMemoryMeter {
  private tasks = 0;

  private readonly coordinator: { mf: Miniflare; url: URL; operatorToken: string };
  private readonly clientDir: string;
  private readonly stateDir: string;

  private constructor(coordinator: ClientMemoryMeter["coordinator"], clientDir: string, stateDir: string) {
    this.coordinator = coordinator;
    this.clientDir = clientDir;
    this.stateDir = stateDir;
  }

  static async start(): Promise<ClientMemoryMeter> {
    if (!hasProc()) throw new Error("measuring a client's memory reads Linux /proc");
    const [coordinatorDir, clientDir] = await Promise.all([bundleWorker("wrangler.toml"), bundleWorker("workers/client/wrangler.toml")]);
    const stateDir = mkdtempSync(join(tmpdir(), "fedflare-client-memory-"));
    const tokens = { operator: randomToken(), viewer: randomToken() };
    const coordinator = new Miniflare(
      convertV4MiniflareOptions({
        resourcePersistencePath: join(stateDir, "coordinator"),
        workers: [coordinatorWorker(coordinatorDir, MASTER_KEY, tokens)],
      }),
    );
    return new ClientMemoryMeter({ mf: coordinator, url: await coordinator.ready, operatorToken: tokens.operator }, clientDir, stateDir);
  }

  /** Runs one round of `setup` on a fresh client and returns its memory; throws when the task fails. */
  async measure(setup: ClientTaskSetup): Promise<ClientMemory> {
    return (await this.federation(setup, 1, 1))[0]!;
  }

  /**
   * Runs `rounds` rounds of a federation of `clients` fresh clients, each alone in its own workerd process,
   * all training each round at once; returns each client's memory over all its rounds (its peaks, its
   * steps and bytes summed). Throws when a task fails.
   */
  async federation(setup: ClientTaskSetup, clients: number, rounds: number): Promise<ClientMemory[]> {
    const id = `m${++this.tasks}`;
    const ids = clients === 1 ? [CLIENT] : Array.from({ length: clients }, (_, i) => `${CLIENT}${i + 1}`);
    await this.createFederation(id, setup, ids, rounds);
    const running: MeasuredClient[] = [];
    try {
      for (const client of ids) running.push(await this.startClient(id, client, setup));
      for (let round = 1; round <= rounds; round++) {
        if (round > 1) await this.openRound(id);
        await Promise.all(running.map((c) => c.train(round)));
      }
      return running.map((c) => c.result());
    } finally {
      await Promise.all(running.map((c) => c.dispose()));
    }
  }

  /** A client in a workerd process of its own, its buckets filled, warm and idle, its samplers running. */
  private async startClient(id: string, client: string, setup: ClientTaskSetup): Promise<MeasuredClient> {
    const inspectorPort = await freePort();
    const options = convertV4MiniflareOptions({
      inspectorPort,
      // On disk, so the buckets' objects do not sit in the measured process's memory.
      resourcePersistencePath: join(this.stateDir, `${id}-${client}`),
      workers: [
        await clientWorker(this.clientDir, client, MASTER_KEY, { ...setup.bindings, federations: [id], coordinator: this.coordinator.url }),
      ],
    });
    // The buckets are filled by a process of their own: writing them leaves freed memory resident, which
    // the task would then reuse unseen.
    const filler = new Miniflare(options);
    try {
      await fillBuckets(filler, client, setup.modelFiles, setup.partition);
    } finally {
      await filler.dispose();
    }
    const mf = new Miniflare(options);
    const pid = workerdOf(await mf.ready);
    const worker = await mf.getWorker(`client-${client}`);
    const isolate = await isolateOf(inspectorPort, `client-${client}`);
    const signed = async (method: "GET" | "POST", path: string, body?: string): Promise<Response> => {
      const bytes = body === undefined ? undefined : new TextEncoder().encode(body);
      const headers = await signRequest(await deriveClientSecret(MASTER_KEY, client), OPERATOR_ID, method, path, bytes);
      return (await worker.fetch(`http://client${path}`, {
        method,
        headers: { ...headers },
        ...(bytes ? { body: bytes } : {}),
      })) as unknown as Response;
    };
    // Warm: the worker answers and its trainer Durable Object exists (it has no job yet).
    await (await signed("GET", `/tasks/${id}/1`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 500));
    const idleMiB = statusMiB(pid, "VmRSS");
    const hwm = resetPeak(pid);
    let sampled = idleMiB;
    const jsIdle = await isolate.bytes();
    let jsPeak = jsIdle;
    // The largest JS sample since the last poll, and the latest one (where the next window starts).
    let jsWindow = jsPeak;
    let jsLast = jsPeak;
    let isolatePeak = 0;
    let wasm = 0;
    const totals = { stepsDone: 0, uploadBytes: 0, downloadBytes: 0, seconds: 0 };
    // Over all rounds: the steps and time between each round's first and last saved progress.
    const steady = { steps: 0, ms: 0 };
    const sampler = setInterval(() => {
      if (!hwm) sampled = Math.max(sampled, statusMiB(pid, "VmRSS"));
      void isolate.bytes().then((b) => {
        jsPeak = Math.max(jsPeak, b);
        jsWindow = Math.max(jsWindow, b);
        jsLast = b;
      });
    }, SAMPLE_MS);
    return {
      async train(round) {
        const started = performance.now();
        let first: { steps: number; at: number } | null = null;
        let last: { steps: number; at: number } | null = null;
        const res = await signed("POST", "/tasks", JSON.stringify({ federationId: id, round }));
        if (res.status !== 202) throw new Error(`POST /tasks: ${res.status} ${await res.text()}`);
        for (;;) {
          await new Promise((r) => setTimeout(r, POLL_MS));
          const job = (await (await signed("GET", `/tasks/${id}/${round}`)).json()) as {
            status: string;
            stepsDone: number;
            detail: string | null;
            uploadBytes: number | null;
            uploadMetrics: Record<string, number> | null;
            wasmHeapBytes?: number;
          };
          if (job.status === "failed") throw new Error(`client ${client}'s task of round ${round} failed: ${job.detail}`);
          wasm = job.wasmHeapBytes ?? 0;
          isolatePeak = Math.max(isolatePeak, jsWindow + wasm);
          jsWindow = jsLast;
          if (job.stepsDone > (last?.steps ?? 0)) {
            last = { steps: job.stepsDone, at: performance.now() };
            first ??= last;
          }
          if (job.status !== "uploaded") continue;
          if (first && last && last.steps > first.steps) {
            steady.steps += last.steps - first.steps;
            steady.ms += last.at - first.at;
          }
          totals.stepsDone += job.stepsDone;
          totals.uploadBytes += job.uploadBytes ?? 0;
          totals.downloadBytes += job.uploadMetrics?.download_bytes ?? 0;
          totals.seconds += (performance.now() - started) / 1000;
          return;
        }
      },
      result() {
        const peakMiB = hwm ? statusMiB(pid, "VmHWM") : sampled;
        return {
          jsIdleMiB: jsIdle / 2 ** 20,
          jsPeakMiB: jsPeak / 2 ** 20,
          wasmHeapMiB: wasm / 2 ** 20,
          isolatePeakMiB: isolatePeak / 2 ** 20,
          idleMiB,
          peakMiB,
          peakOverIdleMiB: peakMiB - idleMiB,
          measure: hwm ? "VmHWM" : "VmRSS sampled",
          ...totals,
          stepMs: steady.steps > 0 ? steady.ms / steady.steps : null,
        };
      },
      async dispose() {
        clearInterval(sampler);
        isolate.close();
        await mf.dispose();
      },
    };
  }

  /** Opens the federation's next round once the last one has closed (its quorum closes it, as uploads land). */
  private async openRound(id: string): Promise<void> {
    for (let tries = 0; ; tries++) {
      const res = await this.coordinator.mf.dispatchFetch(new URL(`/federations/${id}/rounds`, this.coordinator.url), {
        method: "POST",
        headers: bearer(this.coordinator.operatorToken),
      });
      const text = await res.text();
      if (res.ok) return;
      if (tries >= 100) throw new Error(`POST /federations/${id}/rounds: ${res.status} ${text}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** Creates federation `id` of these clients, every one in every round, supplies its version 0 if given, and opens round 1. */
  private async createFederation(id: string, setup: ClientTaskSetup, clients: string[], rounds: number): Promise<void> {
    const config = {
      id,
      ...setup.federation,
      strategy: { name: "fedavg" },
      rounds,
      clients,
      clientsPerRound: clients.length,
      minClients: clients.length,
      deadlineSeconds: 3600,
      // Measured, not refused: a client over a Worker's memory is what some rows are here to show.
      clientMemoryMiB: 1 << 20,
    };
    await this.operator("/federations", { method: "POST", body: JSON.stringify(config) });
    if (setup.initial) {
      const supply = await initialAdapterRequest(id, this.coordinator.operatorToken, setup.initial);
      await this.operator(supply.path, supply);
    }
    await this.operator(`/federations/${id}/rounds`, { method: "POST" });
  }

  /** A request to the coordinator as the operator; any refusal throws. */
  private async operator(
    path: string,
    init: { method: string; body?: string | Uint8Array; headers?: Record<string, string> },
  ): Promise<void> {
    const url = new URL(path, this.coordinator.url);
    const res = await this.coordinator.mf.dispatchFetch(url, {
      method: init.method,
      headers: { ...bearer(this.coordinator.operatorToken), ...init.headers },
      ...(init.body ? { body: init.body } : {}),
    });
    if (!res.ok) throw new Error(`${init.method} ${url.pathname}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }

  async dispose(): Promise<void> {
    await this.coordinator.mf.dispose();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}
