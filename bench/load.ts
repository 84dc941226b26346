// Load on one federation's aggregation (issue 20): n simulated clients, each a signed upload over loopback
// HTTP from this Node process (at most --concurrency in flight), against the coordinator and the
// federation's one Durable Object, or its shard objects (--shards), in workerd; then signed downloads of the
// new version. Cases: each --clients count with a small delta (1 KB), and --large clients with 8 MiB deltas.
// Per case and shard count: uploads a second, p50 and p99 acknowledgement latency, the latency of the upload
// that closed the round (it waits for the seals, the merges and the close), refused or failed uploads,
// workerd's CPU and peak resident memory over the uploads (the whole process: the coordinator, every object
// and the runtime), the busiest object's time on uploads (the sum over its receipts of its time from an
// upload's admission to its receipt: what one object does one after another, since an object runs one
// request at a time), version downloads a second (and how many came
// from R2), and the largest difference between the new version and FedAvg computed here in float64 from what
// was sent. Local workerd runs every object on one thread, so the uploads a second here are the machine's;
// the busiest object's time is what sharding divides in production, where objects run apart.
// Run: node bench/load.ts [--clients 1000,10000] [--large 100] [--shards 1,8] [--concurrency 64] [--downloads 2000]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "./lib/args.ts";
import { LocalFederation } from "../cli/local-federation.ts";
import { descendantCpuSeconds } from "../cli/process-cpu.ts";
import { descendants } from "../cli/process-tree.ts";
import { toHfConfig } from "../src/engine/config.ts";
import { normalSamples } from "../src/engine/llama/init.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { shardOf } from "../src/fl/shards.ts";
import { decodeTensorFile, encodeTensorFile } from "../src/fl/tensor-file.ts";
import { deriveClientSecret, signRequest } from "../src/protocol/signature.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { tinyConfig } from "../test/fixtures/tiny-llama.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({
  options: {
    clients: { type: "string", default: "1000,10000" },
    large: { type: "string", default: "100" },
    shards: { type: "string", default: "1,8" },
    concurrency: { type: "string", default: "64" },
    downloads: { type: "string", default: "2000" },
  },
});
const CONCURRENCY = Number(values.concurrency);
const DOWNLOADS = Number(values.downloads);
/** 8 MiB bodies in flight at once: a coordinator isolate holds each one it reads (128 MB in production). */
const LARGE_CONCURRENCY = 8;
const MASTER = "load-bench-master-key";
const log = (s: string) => process.stderr.write(`${s}\n`);
/**
 * The adapters: small, LoRA r 1 on q_proj of the tests' tiny model (256 values, 1 KB a delta); large, r 64 on
 * every module of 8 layers of width 256 (8 MiB).
 */
const ADAPTERS = {
  small: {
    model: toHfConfig(tinyConfig({ heads: 4, kvHeads: 2 })),
    method: { type: "lora", r: 1, alpha: 2, targetModules: ["q_proj"] },
  },
  large: {
    model: toHfConfig(tinyConfig({ hidden: 256, intermediate: 512, layers: 8, heads: 4, kvHeads: 2 })),
    method: {
      type: "lora",
      r: 64,
      alpha: 128,
      targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    },
  },
};

const root = mkdtempSync(join(tmpdir(), "fedflare-load-"));
const fed = await LocalFederation.start({ stateDir: join(root, "state"), masterKey: MASTER, clients: [], modelFiles: new Map() });
const workerd = descendants(process.pid, "workerd")[0]!;
const status = (field: string) =>
  Number(new RegExp(`^${field}:\\s*(\\d+)`, "m").exec(readFileSync(`/proc/${workerd.pid}/status`, "utf8"))?.[1]) / 1024;

async function operator(path: string, init: RequestInit = {}): Promise<Response> {
  const res = await fed.coordinator(path, init as never);
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${path}: ${res.status} ${await res.text()}`);
  return res;
}

/** Runs `jobs` with at most `concurrency` in flight; each job's milliseconds and whether it succeeded. */
async function pool(
  count: number,
  concurrency: number,
  job: (i: number) => Promise<boolean>,
): Promise<{ ms: number[]; failed: number; seconds: number }> {
  const ms: number[] = [];
  let failed = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const i = next++;
        const t0 = performance.now();
        if (!(await job(i))) failed++;
        ms.push(performance.now() - t0);
      }
    }),
  );
  return { ms: ms.sort((a, b) => a - b), failed, seconds: (performance.now() - started) / 1000 };
}
const quantile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

interface Case {
  clients: number;
  adapter: keyof typeof ADAPTERS;
  shards: number;
  concurrency: number;
}

/** One federation of `c.clients` clients, all sampled, every one uploading once; its row. */
async function runCase(c: Case) {
  const n = c.clients;
  const id = `load-${c.adapter}-${n}-${c.shards}`;
  const clients = Array.from({ length: n }, (_, i) => `c${String(i).padStart(5, "0")}`);
  await operator("/federations", {
    method: "POST",
    body: JSON.stringify({
      id,
      model: { name: "load", config: ADAPTERS[c.adapter].model, quant: "f32" },
      method: ADAPTERS[c.adapter].method,
      strategy: { name: "fedavg" },
      rounds: 1,
      clients,
      clientsPerRound: n,
      minClients: n,
      local: { steps: 1, batchSize: 1, lr: 1e-3 },
      deadlineSeconds: 3600,
      ...(c.shards > 1 ? { shards: c.shards } : {}),
    }),
  });
  await operator(`/federations/${id}/rounds`, { method: "POST" });
  const global = decodeTensorFile(new Uint8Array(await (await operator(`/federations/${id}/versions/0`)).arrayBuffer()), "v0");
  const names = [...global.tensors.keys()];
  const secrets = await Promise.all(clients.map((x) => deriveClientSecret(MASTER, x)));
  const deltaOf = (i: number) =>
    new Map(names.map((k, j) => [k, normalSamples(seededUniform(7919 * i + j), global.tensors.get(k)!.length, 0.01)]));
  const examplesOf = (i: number) => 1 + (i % 50);
  log(`${n} clients, ${c.adapter} deltas, ${c.shards} shard(s): uploading`);
  const cpu0 = descendantCpuSeconds("workerd") ?? Number.NaN;
  writeFileSync(`/proc/${workerd.pid}/clear_refs`, "5");
  let closingMs = Number.NaN;
  const uploads = await pool(n, c.concurrency, async (i) => {
    const path = `/federations/${id}/rounds/1/updates/${clients[i]}`;
    const body = encodeTensorFile(deltaOf(i), global.shapes, { format: "pt", num_examples: String(examplesOf(i)), metrics: "{}" });
    const headers = { ...(await signRequest(secrets[i]!, clients[i]!, "PUT", path, body)), "idempotency-key": `${id}/${i}` };
    const t0 = performance.now();
    const res = await fetch(new URL(path, fed.url), { method: "PUT", headers, body: Buffer.from(body) });
    const answer = (await res.json()) as { roundStatus?: string };
    if (answer.roundStatus === "closed") closingMs = performance.now() - t0;
    return res.ok;
  });
  const cpu = (descendantCpuSeconds("workerd") ?? Number.NaN) - cpu0;
  const peakMiB = status("VmHWM");
  const round = (await (await operator(`/federations/${id}/rounds/1`)).json()) as {
    status: string;
    uploads: number;
    receipts: { clientId: string; foldMs: number }[];
  };
  // What each object did one upload after another: the root's every upload, or each shard's own.
  const busy = new Map<number, number>();
  for (const r of round.receipts) {
    const object = c.shards > 1 ? shardOf(1, r.clientId, c.shards) : 0;
    busy.set(object, (busy.get(object) ?? 0) + r.foldMs / 1000);
  }
  // FedAvg in float64 from what was sent, against version 1.
  const after = decodeTensorFile(new Uint8Array(await (await operator(`/federations/${id}/versions/1`)).arrayBuffer()), "v1");
  const total = clients.reduce((sum, _, i) => sum + examplesOf(i), 0);
  const sums = new Map(names.map((k) => [k, new Float64Array(global.tensors.get(k)!.length)]));
  for (let i = 0; i < n; i++)
    for (const [k, t] of deltaOf(i)) {
      const sum = sums.get(k)!;
      t.forEach((x, j) => (sum[j]! += examplesOf(i) * x));
    }
  let worst = 0;
  for (const k of names) {
    const base = global.tensors.get(k)!;
    const sum = sums.get(k)!;
    after.tensors.get(k)!.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - (base[j]! + sum[j]! / total)))));
  }
  log(`${n} clients: downloading version 1`);
  let fromR2 = 0;
  const downloads = await pool(DOWNLOADS, c.concurrency, async (i) => {
    const k = i % n;
    const path = `/federations/${id}/versions/1`;
    const res = await fetch(new URL(path, fed.url), { headers: { ...(await signRequest(secrets[k]!, clients[k]!, "GET", path)) } });
    await res.arrayBuffer();
    if (res.headers.get("x-fedflare-source") === "r2") fromR2++;
    return res.ok;
  });
  await operator(`/federations/${id}`, { method: "DELETE" });
  return {
    clients: n,
    deltaBytes: names.reduce((b, k) => b + 4 * global.tensors.get(k)!.length, 0),
    shards: c.shards,
    concurrency: c.concurrency,
    roundStatus: round.status,
    folded: round.uploads,
    uploadsPerSecond: n / uploads.seconds,
    ackP50Ms: quantile(uploads.ms, 0.5),
    ackP99Ms: quantile(uploads.ms, 0.99),
    closingUploadMs: closingMs,
    failedUploads: uploads.failed,
    workerdCpuSeconds: cpu,
    workerdPeakMiB: peakMiB,
    busiestObjectSeconds: Math.max(...busy.values()),
    objects: busy.size,
    downloadsPerSecond: DOWNLOADS / downloads.seconds,
    downloadsFromR2: fromR2,
    failedDownloads: downloads.failed,
    maxDifferenceFromFloat64Mean: worst,
  };
}

const shardCounts = values.shards.split(",").map(Number);
const cases: Case[] = [
  ...values.clients.split(",").map((n) => ({ clients: Number(n), adapter: "small" as const, concurrency: CONCURRENCY })),
  ...(Number(values.large) > 0 ? [{ clients: Number(values.large), adapter: "large" as const, concurrency: LARGE_CONCURRENCY }] : []),
].flatMap((c) => shardCounts.map((shards) => ({ ...c, shards })));
const rows = [];
for (const c of cases) rows.push(await runCase(c));
await fed.dispose();
rmSync(root, { recursive: true, force: true });

printTable(
  [
    "clients",
    "delta",
    "shards",
    "folded",
    "uploads/s",
    "ack p50 ms",
    "ack p99 ms",
    "closing upload ms",
    "failed",
    "workerd CPU s",
    "workerd peak MiB",
    "busiest object's uploads s",
    "downloads/s (from R2)",
    "max |v - mean|",
  ],
  rows.map((r) => [
    r.clients,
    r.deltaBytes >= 1 << 20 ? `${fmt(r.deltaBytes / 2 ** 20, 0)} MiB` : `${fmt(r.deltaBytes / 1024, 0)} KiB`,
    r.shards,
    `${r.folded} (${r.roundStatus})`,
    fmt(r.uploadsPerSecond, 0),
    fmt(r.ackP50Ms, 1),
    fmt(r.ackP99Ms, 1),
    fmt(r.closingUploadMs, 0),
    r.failedUploads,
    fmt(r.workerdCpuSeconds, 1),
    fmt(r.workerdPeakMiB, 0),
    fmt(r.busiestObjectSeconds, 2),
    `${fmt(r.downloadsPerSecond, 0)} (${r.downloadsFromR2})`,
    r.maxDifferenceFromFloat64Mean.toExponential(1),
  ]),
);
log(`wrote ${await writeResults("load", { rows })}`);
