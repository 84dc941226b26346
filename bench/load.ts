// Load on one federation's aggregator (issue 20): n simulated clients, each a signed upload of a small
// delta over loopback HTTP from this Node process (at most --concurrency in flight), against the
// coordinator and its one Durable Object in workerd; then signed downloads of the new version. Per n:
// uploads a second, p50 and p99 acknowledgement latency, refused or failed uploads, workerd's CPU and peak
// resident memory over the uploads (the whole process: the coordinator's isolate and the runtime), version
// downloads a second (and how many came from R2), and the largest difference between the new version and
// FedAvg computed here in float64 from what was sent. Sharded aggregation does not exist yet: this is the
// single object's side of the table.
// Run: node bench/load.ts [--clients 1000,10000] [--concurrency 64] [--downloads 2000]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LocalFederation } from "../cli/local-federation.ts";
import { descendantCpuSeconds } from "../cli/process-cpu.ts";
import { descendants } from "../cli/process-tree.ts";
import { toHfConfig } from "../src/engine/config.ts";
import { normalSamples } from "../src/engine/llama/init.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { decodeTensorFile, encodeTensorFile } from "../src/fl/tensor-file.ts";
import { deriveClientSecret, signRequest } from "../src/protocol/signature.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { tinyConfig } from "../test/fixtures/tiny-llama.ts";
import { writeResults } from "./lib/results.ts";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "1000,10000" },
    concurrency: { type: "string", default: "64" },
    downloads: { type: "string", default: "2000" },
  },
});
const CONCURRENCY = Number(values.concurrency);
const DOWNLOADS = Number(values.downloads);
const MASTER = "load-bench-master-key";
const log = (s: string) => process.stderr.write(`${s}\n`);
// A small adapter: LoRA r 1 on q_proj of the tests' tiny model (2 layers of width 64), 256 values (1 KB a delta).
const MODEL = toHfConfig(tinyConfig({ heads: 4, kvHeads: 2 }));

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

/** Runs `jobs` with at most CONCURRENCY in flight; each job's milliseconds and whether it succeeded. */
async function pool(count: number, job: (i: number) => Promise<boolean>): Promise<{ ms: number[]; failed: number; seconds: number }> {
  const ms: number[] = [];
  let failed = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, count) }, async () => {
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

const rows = [];
for (const n of values.clients.split(",").map(Number)) {
  const id = `load-${n}`;
  const clients = Array.from({ length: n }, (_, i) => `c${String(i).padStart(5, "0")}`);
  await operator("/federations", {
    method: "POST",
    body: JSON.stringify({
      id,
      model: { name: "load", config: MODEL, quant: "f32" },
      method: { type: "lora", r: 1, alpha: 2, targetModules: ["q_proj"] },
      strategy: { name: "fedavg" },
      rounds: 1,
      clients,
      clientsPerRound: n,
      minClients: n,
      local: { steps: 1, batchSize: 1, lr: 1e-3 },
      deadlineSeconds: 3600,
    }),
  });
  await operator(`/federations/${id}/rounds`, { method: "POST" });
  const global = decodeTensorFile(new Uint8Array(await (await operator(`/federations/${id}/versions/0`)).arrayBuffer()), "v0");
  const names = [...global.tensors.keys()];
  const secrets = await Promise.all(clients.map((c) => deriveClientSecret(MASTER, c)));
  const deltaOf = (i: number) =>
    new Map(names.map((k, j) => [k, normalSamples(seededUniform(7919 * i + j), global.tensors.get(k)!.length, 0.01)]));
  const examplesOf = (i: number) => 1 + (i % 50);
  log(`${n} clients: uploading`);
  const cpu0 = descendantCpuSeconds("workerd") ?? Number.NaN;
  writeFileSync(`/proc/${workerd.pid}/clear_refs`, "5");
  const uploads = await pool(n, async (i) => {
    const path = `/federations/${id}/rounds/1/updates/${clients[i]}`;
    const body = encodeTensorFile(deltaOf(i), global.shapes, { format: "pt", num_examples: String(examplesOf(i)), metrics: "{}" });
    const headers = { ...(await signRequest(secrets[i]!, clients[i]!, "PUT", path, body)), "idempotency-key": `${id}/${i}` };
    const res = await fetch(new URL(path, fed.url), { method: "PUT", headers, body: Buffer.from(body) });
    await res.arrayBuffer();
    return res.ok;
  });
  const cpu = (descendantCpuSeconds("workerd") ?? Number.NaN) - cpu0;
  const peakMiB = status("VmHWM");
  const round = (await (await operator(`/federations/${id}/rounds/1`)).json()) as { status: string; uploads: number };
  // FedAvg in float64 from what was sent, against version 1.
  const after = decodeTensorFile(new Uint8Array(await (await operator(`/federations/${id}/versions/1`)).arrayBuffer()), "v1");
  let worst = 0;
  const total = clients.reduce((s, _, i) => s + examplesOf(i), 0);
  for (const k of names) {
    const want = new Float64Array(global.tensors.get(k)!);
    const sum = new Float64Array(want.length);
    for (let i = 0; i < n; i++)
      deltaOf(i)
        .get(k)!
        .forEach((x, j) => (sum[j]! += examplesOf(i) * x));
    after.tensors.get(k)!.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - (want[j]! + sum[j]! / total)))));
  }
  log(`${n} clients: downloading version 1`);
  let fromR2 = 0;
  const downloads = await pool(DOWNLOADS, async (i) => {
    const c = i % n;
    const path = `/federations/${id}/versions/1`;
    const res = await fetch(new URL(path, fed.url), { headers: { ...(await signRequest(secrets[c]!, clients[c]!, "GET", path)) } });
    await res.arrayBuffer();
    if (res.headers.get("x-fedflare-source") === "r2") fromR2++;
    return res.ok;
  });
  rows.push({
    clients: n,
    concurrency: CONCURRENCY,
    roundStatus: round.status,
    folded: round.uploads,
    uploadsPerSecond: n / uploads.seconds,
    ackP50Ms: quantile(uploads.ms, 0.5),
    ackP99Ms: quantile(uploads.ms, 0.99),
    failedUploads: uploads.failed,
    workerdCpuSeconds: cpu,
    workerdPeakMiB: peakMiB,
    downloadsPerSecond: DOWNLOADS / downloads.seconds,
    downloadsFromR2: fromR2,
    failedDownloads: downloads.failed,
    maxDifferenceFromFloat64Mean: worst,
  });
  await operator(`/federations/${id}`, { method: "DELETE" });
}
await fed.dispose();
rmSync(root, { recursive: true, force: true });

printTable(
  [
    "clients",
    "folded",
    "uploads/s",
    "ack p50 ms",
    "ack p99 ms",
    "failed",
    "workerd CPU s",
    "workerd peak MiB",
    "downloads/s (from R2)",
    "max |v - mean|",
  ],
  rows.map((r) => [
    r.clients,
    `${r.folded} (${r.roundStatus})`,
    fmt(r.uploadsPerSecond, 0),
    fmt(r.ackP50Ms, 1),
    fmt(r.ackP99Ms, 1),
    r.failedUploads,
    fmt(r.workerdCpuSeconds, 1),
    fmt(r.workerdPeakMiB, 0),
    `${fmt(r.downloadsPerSecond, 0)} (${r.downloadsFromR2})`,
    r.maxDifferenceFromFloat64Mean.toExponential(1),
  ]),
);
log(`wrote ${await writeResults("load", { rows })}`);
