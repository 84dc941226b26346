// SecAgg+ as federations run it: the coordinator and the aggregator Durable Object in workerd (Miniflare,
// on this machine's loopback), n simulated clients in this Node process driving each phase over signed
// HTTP requests (bench/lib/secure-clients.ts, the project's client functions). Per client and phase: the
// bytes up (request bodies) and down (response bodies) and this process's CPU for the client's own
// computation; per phase, workerd's CPU (the coordinator and the aggregator); the last unmask answer's
// latency (the aggregator unmasks and closes the round inside it); the upload's expansion over the plain
// float32 update. Each round's version is checked to be FedAvg of the survivors' quantized sum, bit for bit.
// n = 10, 50, 100, 500 at the degree 2 ⌈log2 n⌉ and the default threshold (a majority of the neighbours),
// with 0%, 10% and 30% of the clients dropping before their masked input; where a client is left with
// fewer surviving neighbours than the threshold the row says so, and the round runs again at the degree
// the federation derives from that dropout rate (secureAggregation.dropoutRate; src/secagg/graph.ts).
// Run: node bench/secagg-loopback.ts [--clients 10,50,100,500] [--drops 0,0.1,0.3]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "./lib/args.ts";
import { LocalFederation } from "../cli/local-federation.ts";
import { descendantCpuSeconds } from "../cli/process-cpu.ts";
import { parseLlamaConfig, toHfConfig } from "../src/engine/config.ts";
import { normalSamples } from "../src/engine/llama/init.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { flatLayout } from "../src/fl/flat-tensors.ts";
import { decodeTensorFile, encodeTensorFile } from "../src/fl/tensor-file.ts";
import { readSafetensorsHeader } from "../src/protocol/safetensors.ts";
import { deriveClientSecret, signRequest } from "../src/protocol/signature.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { SecAggError } from "../src/secagg/errors.ts";
import { defaultDegree, degreeForDropouts } from "../src/secagg/graph.ts";
import { meanSegment, ratioSum } from "../src/secagg/masked-update.ts";
import { writeResults } from "./lib/results.ts";
import { secureRound, type SecureTransport } from "./lib/secure-clients.ts";

const { values } = benchArgs({
  options: {
    clients: { type: "string", default: "10,50,100,500" },
    drops: { type: "string", default: "0,0.1,0.3" },
  },
});

const PHASES = ["advertise", "share", "input", "unmask"] as const;
type Phase = (typeof PHASES)[number];
const MASTER = "secagg-loopback-master-key";
// LoRA r 4 on q_proj and v_proj of 8 layers of width 512: 65,536 values, the in-process bench's length.
const MODEL = toHfConfig(
  parseLlamaConfig({
    model_type: "llama",
    hidden_size: 512,
    intermediate_size: 1024,
    num_hidden_layers: 8,
    num_attention_heads: 8,
    num_key_value_heads: 8,
    vocab_size: 300,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    bos_token_id: 1,
    eos_token_id: 2,
  }),
);

const root = mkdtempSync(join(tmpdir(), "fedflare-secagg-loopback-"));
const fed = await LocalFederation.start({ stateDir: join(root, "state"), masterKey: MASTER, clients: [], modelFiles: new Map() });
const secrets = new Map<string, string>();
const secretOf = async (c: string) => secrets.get(c) ?? secrets.set(c, await deriveClientSecret(MASTER, c)).get(c)!;

async function operator(path: string, init: Parameters<LocalFederation["coordinator"]>[1] = {}): Promise<Response> {
  const res = await fed.coordinator(path, init);
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${path}: ${res.status} ${await res.text()}`);
  return res;
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function run(n: number, dropRate: number, degree: number | null) {
  const id = `loop-${n}-${Math.round(dropRate * 100)}-${degree ?? "derived"}`;
  const clients = Array.from({ length: n }, (_, i) => `c${String(i).padStart(4, "0")}`);
  await operator("/federations", {
    method: "POST",
    body: JSON.stringify({
      id,
      model: { name: "bench", config: MODEL },
      method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] },
      strategy: { name: "fedavg" },
      rounds: 1,
      clients,
      clientsPerRound: n,
      minClients: 2,
      local: { steps: 1, batchSize: 1, lr: 1e-3 },
      deadlineSeconds: 3600,
      maxExamplesPerClient: 100,
      // The clients here are this process, not Workers: the aggregator need not refuse the model for them.
      clientMemoryMiB: 1024,
      secureAggregation: { ...(degree === null ? { dropoutRate: dropRate } : { degree }), phaseSeconds: 3600, maxWeight: 100 },
    }),
  });
  await operator(`/federations/${id}/rounds`, { method: "POST" });
  const v0 = new Uint8Array(await (await operator(`/federations/${id}/versions/0`)).arrayBuffer());
  const global = decodeTensorFile(v0, "v0");
  const valuesPerUpdate = flatLayout(readSafetensorsHeader(v0)).total;
  const updates = new Map(
    clients.map((c, i) => [
      c,
      encodeTensorFile(
        new Map([...global.tensors].map(([k, t], j) => [k, normalSamples(seededUniform(1000 * i + j), t.length, 0.02)])),
        global.shapes,
        { format: "pt", num_examples: String(1 + (i % 100)), metrics: "{}" },
      ),
    ]),
  );
  const dropped = new Set(clients.filter((_, i) => (i * 0.618033988749895) % 1 < dropRate));
  let phase: Phase = "advertise";
  const up = Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<Phase, number>;
  const down = { ...up };
  const clientMs = { ...up };
  const serverCpu: Record<string, number> = {};
  let serverMark = descendantCpuSeconds("workerd") ?? 0;
  const markServer = (p: Phase) => {
    const now = descendantCpuSeconds("workerd") ?? 0;
    serverCpu[p] = (serverCpu[p] ?? 0) + (now - serverMark) * 1000;
    serverMark = now;
  };
  let lastSendMs = 0;
  const signed = async (c: string, method: "GET" | "PUT", path: string, body?: Uint8Array, headers: Record<string, string> = {}) => {
    const signature = await signRequest(await secretOf(c), c, method, path, body);
    const started = performance.now();
    const res = await fetch(new URL(path, fed.url), {
      method,
      headers: { ...signature, ...headers },
      ...(body ? { body: Uint8Array.from(body) } : {}),
    });
    const answer = new Uint8Array(await res.arrayBuffer());
    lastSendMs = performance.now() - started;
    if (!res.ok) throw new Error(`${c} ${method} ${path}: ${res.status} ${new TextDecoder().decode(answer)}`);
    up[phase] += body?.length ?? 0;
    down[phase] += answer.length;
    return answer;
  };
  const at = (c: string) => `/federations/${id}/rounds/1/secagg/${c}`;
  const transport: SecureTransport = {
    view: async (c) => JSON.parse(new TextDecoder().decode(await signed(c, "GET", at(c)))),
    send: async (c, kind, message) => void (await signed(c, "PUT", `${at(c)}/${kind}`, new TextEncoder().encode(JSON.stringify(message)))),
    upload: async (c, body) => void (await signed(c, "PUT", `/federations/${id}/rounds/1/updates/${c}`, body, { "idempotency-key": c })),
    close: async () => void (await operator(`/federations/${id}/rounds/1/close`, { method: "POST" })),
  };
  try {
    const { want, enc, survivors } = await secureRound(transport, clients, updates, {
      dropped,
      before: async (p) => {
        markServer(phase);
        phase = p;
      },
      call: async (p, fn) => {
        const start = cpuMs();
        const value = await fn();
        clientMs[p] += cpuMs() - start;
        return value;
      },
    });
    markServer(phase);
    const round = (await (await operator(`/federations/${id}/rounds/1`)).json()) as { status: string };
    if (round.status !== "closed") throw new Error(`${id}: round 1 is ${round.status}`);
    // The version is FedAvg (x + mean, float32) of the mean decoded from the survivors' quantized sum.
    const ratios = ratioSum(want[enc.values]!, enc, survivors.length);
    const mean = meanSegment(want.subarray(0, enc.values), enc, survivors.length, ratios);
    const v1 = decodeTensorFile(new Uint8Array(await (await operator(`/federations/${id}/versions/1`)).arrayBuffer()), "v1");
    for (const t of flatLayout(readSafetensorsHeader(v0)).tensors) {
      const got = v1.tensors.get(t.name)!;
      const base = global.tensors.get(t.name)!;
      if (got.some((x, i) => x !== Math.fround(base[i]! + mean[t.start + i]!)))
        throw new Error(`${id}: the version is not FedAvg of the sum`);
    }
    const per = (r: Record<Phase, number>, p: Phase) => r[p] / (p === "input" || p === "unmask" ? survivors.length : n);
    const derived = degree ?? degreeForDropouts(n, dropRate);
    return {
      clients: n,
      degree: Math.min(derived, n - 1),
      degreeFrom: degree === null ? "dropoutRate" : "default",
      dropRate,
      survivors: survivors.length,
      values: valuesPerUpdate,
      clientCpuMs: Object.fromEntries(PHASES.map((p) => [p, per(clientMs, p)])),
      bytesUpPerClient: Object.fromEntries(PHASES.map((p) => [p, per(up, p)])),
      bytesDownPerClient: Object.fromEntries(PHASES.map((p) => [p, per(down, p)])),
      serverCpuMs: serverCpu,
      unmaskAndCloseMs: lastSendMs,
      expansionUp: PHASES.reduce((s, p) => s + per(up, p), 0) / (4 * valuesPerUpdate),
    };
  } catch (e) {
    if (!(e instanceof SecAggError) || e.code !== "below_threshold") throw e;
    await operator(`/federations/${id}/rounds/1/fail`, { method: "POST", body: JSON.stringify({ reason: "bench: below threshold" }) });
    return { clients: n, degree: degree ?? degreeForDropouts(n, dropRate), dropRate, failed: e.message };
  }
}

const rows: Awaited<ReturnType<typeof run>>[] = [];
try {
  for (const n of values.clients.split(",").map(Number))
    for (const d of values.drops.split(",").map(Number)) {
      process.stderr.write(`n ${n}, degree ${defaultDegree(n)}, drops ${d} ...\n`);
      const row = await run(n, d, defaultDegree(n));
      rows.push(row);
      if (!("failed" in row)) continue;
      process.stderr.write(`n ${n}, the degree for dropoutRate ${d} (${degreeForDropouts(n, d)}) ...\n`);
      rows.push(await run(n, d, null));
    }
} finally {
  await fed.dispose();
  rmSync(root, { recursive: true, force: true });
}

printTable(
  [
    "clients",
    "degree",
    "drops",
    "survivors",
    "client CPU ms (adv, share, input, unmask)",
    "KB up/client",
    "KB down/client",
    "workerd CPU ms (adv, share, input, unmask)",
    "unmask + close ms",
    "expansion up",
  ],
  rows.map((r): (string | number)[] =>
    "failed" in r && r.failed !== undefined
      ? [r.clients, r.degree, `${100 * r.dropRate}%`, "round fails", r.failed, "", "", "", "", ""]
      : [
          r.clients,
          r.degree,
          `${100 * r.dropRate}%`,
          r.survivors,
          PHASES.map((p) => fmt(r.clientCpuMs[p]!, 1)).join(" / "),
          fmt(PHASES.reduce((s, p) => s + r.bytesUpPerClient[p]!, 0) / 1024, 1),
          fmt(PHASES.reduce((s, p) => s + r.bytesDownPerClient[p]!, 0) / 1024, 1),
          PHASES.map((p) => fmt(r.serverCpuMs[p] ?? 0, 0)).join(" / "),
          fmt(r.unmaskAndCloseMs, 0),
          fmt(r.expansionUp, 3),
        ],
  ),
);
console.log(`\nwrote ${await writeResults("secagg-loopback", { rows })}`);
