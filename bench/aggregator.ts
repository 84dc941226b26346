// The aggregator Durable Object in workerd through Miniflare, with real SQLite storage, against adapter
// size: LoRA adapters of about 1, 8, 32 and 100 MB on one model shape (hidden 1024, 16 layers, all seven
// modules; rank picks the size). For each size, a fresh workerd: create the federation (FedAdam, so the
// close also reads and writes two moment slots), fold uploads one after another, fold the last one (which
// closes the round), then download the new version; the peak resident memory of the workerd process is
// reset (/proc/<pid>/clear_refs) before each phase and read after it, so each phase's peak is its own.
// A size over the platform's limits is refused at creation, and the bench reports the refusal.
// Then, for every size (those refused too), the aggregator's own fold and close in a Node process of their
// own (bench/lib/aggregator-memory.ts: the same accumulator code on node:sqlite), whose peak over its
// inputs is the object's working memory apart from the rest of workerd.
// Then `--clients` concurrent uploads of the smallest size check that none is lost under load.
// Run: node bench/aggregator.ts [--clients N] [--folds N]
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "./lib/args.ts";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { bundleWorker } from "../cli/bundle-worker.ts";
import { randomToken } from "../cli/local-federation.ts";
import { descendants } from "../cli/process-tree.ts";
import { toHfConfig, parseLlamaConfig } from "../src/engine/config.ts";
import { BENCH_MODEL, BENCH_MODULES } from "./lib/aggregator-memory.ts";
import { normalSamples } from "../src/engine/llama/init.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { encodeTensorFile, tensorShapes } from "../src/fl/tensor-file.ts";
import { bearer } from "../src/protocol/bearer.ts";
import { deriveClientSecret, signRequest } from "../src/protocol/signature.ts";
import { printTable } from "../src/report/table.ts";
import { median } from "./lib/timing.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({ options: { clients: { type: "string", default: "40" }, folds: { type: "string", default: "4" } } });
const CONCURRENT = Number(values.clients);
const FOLDS = Number(values.folds);
const MASTER = randomToken();
const OPERATOR = randomToken();
const log = (s: string) => process.stderr.write(`${s}\n`);
const MB = 1e6;

/** hidden 1024, GQA 16/4, SwiGLU 2816, 16 layers: 290,816 LoRA parameters per unit of rank on all seven modules. */
const MODEL = toHfConfig(parseLlamaConfig(BENCH_MODEL));
const MODULES = BENCH_MODULES;
const PER_RANK_BYTES = 290_816 * 4;
const TARGETS_MB = [1, 8, 32, 100];

/** The workerd process serving this Miniflare (the one child workerd of this process), its memory in MiB. */
function workerd(): { pid: number; rssMiB: () => number; peakMiB: () => number; resetPeak: () => void } {
  const procs = descendants(process.pid, "workerd");
  if (procs.length !== 1) throw new Error(`expected one workerd process, found ${procs.length}`);
  const pid = procs[0]!.pid;
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s*(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;
  return {
    pid,
    rssMiB: () => field("VmRSS"),
    peakMiB: () => field("VmHWM"),
    resetPeak: () => writeFileSync(`/proc/${pid}/clear_refs`, "5"),
  };
}

async function start(root: string) {
  const dir = await bundleWorker("wrangler.toml");
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      resourcePersistencePath: join(root, "state"),
      workers: [
        {
          name: "coordinator",
          modulesRoot: dir,
          modules: [{ type: "ESModule", path: join(dir, "index.js") }],
          compatibilityDate: "2026-11-01",
          durableObjects: { AGGREGATOR: { className: "Aggregator", useSQLite: true } },
          bindings: { FEDFLARE_MASTER_KEY: MASTER, FEDFLARE_OPERATOR_TOKEN: OPERATOR, FEDFLARE_VIEWER_TOKEN: randomToken() },
        },
      ],
    }),
  );
  await mf.ready;
  const api = async (path: string, init: { method?: string; body?: string | Uint8Array; headers?: Record<string, string> } = {}) =>
    (await mf.getWorker("coordinator")).fetch(`http://coordinator${path}`, {
      ...init,
      headers: { ...bearer(OPERATOR), ...init.headers },
    });
  return { mf, api };
}

type Api = Awaited<ReturnType<typeof start>>["api"];

function federation(id: string, r: number, clients: string[]) {
  return {
    id,
    model: { name: "bench-1024x16", config: MODEL },
    method: { type: "lora", r, alpha: 2 * r, targetModules: MODULES },
    strategy: { name: "fedadam" },
    rounds: 2,
    clients,
    clientsPerRound: clients.length,
    minClients: 1,
    local: { steps: 1, batchSize: 1, lr: 1e-3 },
    deadlineSeconds: 3600,
  };
}

async function uploadBody(api: Api, id: string, client: string, round: number, body: Uint8Array): Promise<number> {
  const path = `/federations/${id}/rounds/${round}/updates/${client}`;
  const headers = {
    ...(await signRequest(await deriveClientSecret(MASTER, client), client, "PUT", path, body)),
    "idempotency-key": `${round}-${client}`,
  };
  const started = performance.now();
  const res = await api(path, { method: "PUT", headers, body });
  if (res.status !== 200) throw new Error(`upload of ${client}: ${res.status} ${await res.text()}`);
  return performance.now() - started;
}

/** Deltas with the version's names and shapes, from its header: random values, one seed a client. */
function deltaBody(shapes: Map<string, number[]>, seed: number): Uint8Array {
  const u = seededUniform(seed);
  const delta = new Map(
    [...shapes].map(([k, s]) => [
      k,
      normalSamples(
        u,
        s.reduce((a, b) => a * b, 1),
        1e-3,
      ),
    ]),
  );
  return encodeTensorFile(delta, shapes, { format: "pt", num_examples: String(10 + seed), metrics: '{"train_loss":1}' });
}

interface AccumulatorMemory {
  foldPeakOverMiB: number;
  foldMsPerMB: number;
  closePeakOverMiB: number;
  closeMs: number;
}

interface SizeRow {
  targetMB: number;
  rank: number;
  adapterMB: number;
  refused: string | null;
  accumulator: AccumulatorMemory;
  uploadMB?: number;
  foldMsPerMB?: number;
  closeMs?: number;
  downloadMs?: number;
  baselineMiB?: number;
  peakFoldMiB?: number;
  peakCloseMiB?: number;
  peakDownloadMiB?: number;
}

const rows: SizeRow[] = [];
for (const target of TARGETS_MB) {
  const rank = Math.max(1, Math.floor((target * MB) / PER_RANK_BYTES));
  const adapterMB = (rank * PER_RANK_BYTES) / MB;
  const accumulator = JSON.parse(
    execFileSync(process.execPath, ["--expose-gc", "--no-warnings", "bench/lib/aggregator-memory.ts", String(rank), String(FOLDS - 1)], {
      encoding: "utf8",
    }),
  ) as AccumulatorMemory;
  log(
    `${target} MB (r=${rank}): the accumulator alone: fold +${accumulator.foldPeakOverMiB.toFixed(1)} MiB, ` +
      `close +${accumulator.closePeakOverMiB.toFixed(1)} MiB over its inputs`,
  );
  const root = mkdtempSync(join(tmpdir(), "fedflare-bench-agg-"));
  const { mf, api } = await start(root);
  try {
    const clients = Array.from({ length: FOLDS }, (_, i) => `c${i}`);
    const created = await api("/federations", { method: "POST", body: JSON.stringify(federation("bench", rank, clients)) });
    if (created.status !== 201) {
      const refusal = ((await created.json()) as { error: { message: string } }).error.message;
      rows.push({ targetMB: target, rank, adapterMB, refused: refusal, accumulator });
      log(`${target} MB (r=${rank}, ${adapterMB.toFixed(1)} MB): refused at creation: ${refusal}`);
      continue;
    }
    await api("/federations/bench/rounds", { method: "POST" });
    const shapes = tensorShapes(new Uint8Array(await (await api("/federations/bench/versions/0")).arrayBuffer()));
    const bodies = clients.map((_, i) => deltaBody(shapes, i));
    const proc = workerd();
    const baseline = proc.rssMiB();
    proc.resetPeak();
    const folds: number[] = [];
    for (let i = 0; i < FOLDS - 1; i++) folds.push(await uploadBody(api, "bench", clients[i]!, 1, bodies[i]!));
    const peakFold = proc.peakMiB();
    proc.resetPeak();
    const last = await uploadBody(api, "bench", clients[FOLDS - 1]!, 1, bodies[FOLDS - 1]!);
    const peakClose = proc.peakMiB();
    const round = (await (await api("/federations/bench/rounds/1")).json()) as { status: string; uploads: number };
    if (round.status !== "closed" || round.uploads !== FOLDS)
      throw new Error(`round 1 is ${round.status} with ${round.uploads} of ${FOLDS} uploads`);
    proc.resetPeak();
    const t = performance.now();
    const v1 = new Uint8Array(await (await api("/federations/bench/versions/1")).arrayBuffer());
    const downloadMs = performance.now() - t;
    const peakDownload = proc.peakMiB();
    if (v1.length < rank * PER_RANK_BYTES) throw new Error(`version 1 is ${v1.length} bytes`);
    const uploadMB = bodies[0]!.length / MB;
    const foldMs = median(folds);
    rows.push({
      targetMB: target,
      rank,
      adapterMB,
      refused: null,
      accumulator,
      uploadMB,
      foldMsPerMB: foldMs / uploadMB,
      closeMs: last - foldMs,
      downloadMs,
      baselineMiB: baseline,
      peakFoldMiB: peakFold,
      peakCloseMiB: peakClose,
      peakDownloadMiB: peakDownload,
    });
    log(
      `${target} MB (r=${rank}): folds ${folds.map((x) => x.toFixed(0)).join(", ")} ms, fold+close ${last.toFixed(0)} ms, peak ` +
        `${peakFold.toFixed(0)}/${peakClose.toFixed(0)}/${peakDownload.toFixed(0)} MiB over ${baseline.toFixed(0)}`,
    );
  } finally {
    await mf.dispose();
    rmSync(root, { recursive: true, force: true });
  }
}

// Concurrent uploads of the smallest adapter: every one folded exactly once.
const root = mkdtempSync(join(tmpdir(), "fedflare-bench-agg-"));
const { mf, api } = await start(root);
const clients = Array.from({ length: CONCURRENT }, (_, i) => `c${String(i).padStart(3, "0")}`);
if ((await api("/federations", { method: "POST", body: JSON.stringify(federation("load", 1, clients)) })).status !== 201)
  throw new Error("could not create the load federation");
await api("/federations/load/rounds", { method: "POST" });
const shapes = tensorShapes(new Uint8Array(await (await api("/federations/load/versions/0")).arrayBuffer()));
const bodies = clients.map((_, i) => deltaBody(shapes, i));
const started = performance.now();
await Promise.all(clients.map((c, i) => uploadBody(api, "load", c, 1, bodies[i]!)));
const seconds = (performance.now() - started) / 1000;
const loadRound = (await (await api("/federations/load/rounds/1")).json()) as { status: string; uploads: number; totalWeight: number };
await mf.dispose();
rmSync(root, { recursive: true, force: true });
const expectedWeight = clients.reduce((s, _, i) => s + 10 + i, 0);
if (loadRound.status !== "closed" || loadRound.uploads !== CONCURRENT || loadRound.totalWeight !== expectedWeight)
  throw new Error(`load round: ${JSON.stringify(loadRound)}`);

printTable(
  [
    "adapter MB (LoRA r)",
    "upload MB",
    "fold ms/MB",
    "close ms",
    "download ms",
    "workerd RSS before MiB",
    "peak folding MiB",
    "peak closing MiB",
    "peak serving MiB",
    "object: fold +MiB",
    "object: close +MiB",
    "object: fold ms/MB",
    "object: close ms",
  ],
  rows.map((r) => {
    const a = r.accumulator;
    const own = [a.foldPeakOverMiB.toFixed(1), a.closePeakOverMiB.toFixed(1), a.foldMsPerMB.toFixed(1), a.closeMs.toFixed(0)];
    return r.refused !== null
      ? [`${r.adapterMB.toFixed(1)} (r=${r.rank})`, "refused at creation", "", "", "", "", "", "", "", ...own]
      : [
          `${r.adapterMB.toFixed(1)} (r=${r.rank})`,
          r.uploadMB!.toFixed(1),
          r.foldMsPerMB!.toFixed(1),
          r.closeMs!.toFixed(0),
          r.downloadMs!.toFixed(0),
          r.baselineMiB!.toFixed(0),
          r.peakFoldMiB!.toFixed(0),
          r.peakCloseMiB!.toFixed(0),
          r.peakDownloadMiB!.toFixed(0),
          ...own,
        ];
  }),
);
for (const r of rows) if (r.refused !== null) process.stdout.write(`${r.adapterMB.toFixed(1)} MB: ${r.refused}\n`);
process.stdout.write(
  `Times are end to end from this process (sign, send, fold in the object, answer): fold ms/MB is the median of ` +
    `${FOLDS - 1} uploads over the upload's size; close ms is the last upload's time less that median. ` +
    `Memory is the whole workerd process (every isolate and the runtime, the coordinator's copies of each body included): ` +
    `/proc VmRSS before, and VmHWM reset before and read after each phase. ` +
    `"object:" columns are the aggregator's accumulator alone (Node, node:sqlite on a file): the spread of its live memory ` +
    `(V8 heap and ArrayBuffers after a full GC, sampled at every storage call: highest less lowest) while folding ` +
    `${FOLDS - 1} uploads and closing with FedAdam, the uploads it holds not counted.\n` +
    `${CONCURRENT} concurrent uploads of ${(bodies[0]!.length / MB).toFixed(1)} MB: ${(CONCURRENT / seconds).toFixed(1)} uploads/s, all ` +
    `${loadRound.uploads} folded once (total weight ${loadRound.totalWeight}).\n`,
);
await writeResults("aggregator", {
  strategy: "fedadam",
  folds: FOLDS,
  model: "hidden 1024, 16 layers, GQA 16/4, SwiGLU 2816; LoRA on all seven modules",
  sizes: rows,
  concurrent: { clients: CONCURRENT, uploadBytes: bodies[0]!.length, uploadsPerSecond: CONCURRENT / seconds, uploads: loadRound.uploads },
});
