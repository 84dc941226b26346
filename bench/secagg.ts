// SecAgg+'s costs (src/secagg/protocol.ts) for n simulated clients in one Node process, the phases run
// in memory (no network, no aggregator Durable Object yet): per client, the bytes up and down and the CPU
// of each phase; the server's CPU to unmask the sum; the expansion of a client's upload over the plain
// float32 update; for n = 10, 50, 100, 500, the degree 2 ceil(log2 n) and the threshold a majority of
// the neighbours, with 0%, 10% and 30% of the clients dropping after sharing their keys (the costly case:
// the server rebuilds their masking keys and removes their pair masks). Each run also checks that the
// unmasked sum equals the survivors' encoded inputs.
// Run: node bench/secagg.ts [--length 65536] [--clients 10,50,100,500] [--drops 0,0.1,0.3]
import { parseArgs } from "node:util";
import { seededUniform } from "../src/engine/sampling.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { addInto, encode, fixedPointFor } from "../src/secagg/fixed-point.ts";
import { SecAggError } from "../src/secagg/errors.ts";
import { defaultDegree } from "../src/secagg/graph.ts";
import type { Bytes } from "../src/secagg/keys.ts";
import {
  type Advert,
  advertise,
  type ClientSecrets,
  inboxFor,
  maskInput,
  type RevealedShare,
  rosterFor,
  secAggRound,
  shareKeys,
  unmask,
  unmaskSum,
} from "../src/secagg/protocol.ts";
import { writeResults } from "./lib/results.ts";

const { values } = parseArgs({
  options: {
    length: { type: "string", default: "65536" },
    clients: { type: "string", default: "10,50,100,500" },
    drops: { type: "string", default: "0,0.1,0.3" },
  },
});
const LENGTH = Number(values.length);
const ID_BYTES = 10;
const PHASES = ["advertise", "share keys", "masked input", "unmask"] as const;
type Phase = (typeof PHASES)[number];

/** CPU milliseconds (all threads: WebCrypto works on libuv's pool) of `fn`. */
async function cpu<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = process.cpuUsage();
  const value = await fn();
  const used = process.cpuUsage(start);
  return { value, ms: (used.user + used.system) / 1000 };
}

const advertBytes = (a: Advert) => a.encryptionKey.length + a.maskingKey.length + a.seedDigest.length;
const sumBytes = (m: ReadonlyMap<string, Bytes>) => [...m.values()].reduce((s, b) => s + b.length + ID_BYTES, 0);

async function run(n: number, dropRate: number, degree: number) {
  const ids = Array.from({ length: n }, (_, i) => `client-${String(i).padStart(4, "0")}`);
  const threshold = Math.floor(Math.min(degree, n - 1) / 2) + 1;
  const round = secAggRound("bench/1", ids, { degree, threshold, seed: 1, length: LENGTH });
  const fp = fixedPointFor(1, n);
  const input = (id: string) =>
    encode(
      Float32Array.from({ length: LENGTH }, (_, k) => Math.sin(k + id.length * 7 + Number(id.slice(-4)))),
      fp,
      seededUniform(Number(id.slice(-4))),
    );
  const dropped = new Set(ids.filter((_, i) => (i * 0.618033988749895) % 1 < dropRate));
  const ms: Record<Phase, number> = { advertise: 0, "share keys": 0, "masked input": 0, unmask: 0 };
  const up: Record<Phase, number> = { advertise: 0, "share keys": 0, "masked input": 0, unmask: 0 };
  const down: Record<Phase, number> = { advertise: 0, "share keys": 0, "masked input": 0, unmask: 0 };

  const secrets = new Map<string, ClientSecrets>();
  const adverts = new Map<string, Advert>();
  for (const id of ids) {
    const a = await cpu(() => advertise(id));
    secrets.set(id, a.value.secrets);
    adverts.set(id, a.value.advert);
    ms.advertise += a.ms;
    up.advertise += advertBytes(a.value.advert);
  }
  const shared = new Map<string, Map<string, Bytes>>();
  for (const id of ids) {
    const roster = rosterFor(round, adverts, id);
    down["share keys"] += [...roster.values()].reduce((s, a) => s + advertBytes(a) + ID_BYTES, 0);
    const s = await cpu(() => shareKeys(round, secrets.get(id)!, roster));
    shared.set(id, s.value);
    ms["share keys"] += s.ms;
    up["share keys"] += sumBytes(s.value);
  }
  const view = (id: string) => ({ secrets: secrets.get(id)!, roster: rosterFor(round, adverts, id), inbox: inboxFor(shared, id) });
  const maskedSum = new Uint32Array(LENGTH);
  const want = new Uint32Array(LENGTH);
  const survivors = new Set<string>();
  for (const id of ids) {
    const v = view(id);
    down["masked input"] += sumBytes(v.inbox);
    if (dropped.has(id)) continue;
    const x = input(id);
    const y = await cpu(() => maskInput(round, v, x));
    addInto(maskedSum, y.value);
    addInto(want, x);
    survivors.add(id);
    ms["masked input"] += y.ms;
    up["masked input"] += 4 * LENGTH;
  }
  const responses = new Map<string, Map<string, RevealedShare>>();
  for (const id of survivors) {
    down.unmask += (round.graph.get(id) ?? []).length * (ID_BYTES + 1);
    const r = await cpu(() => unmask(round, view(id), { survivors, dropped }));
    responses.set(id, r.value);
    ms.unmask += r.ms;
    up.unmask += [...r.value.values()].reduce((s, x) => s + x.share.length + ID_BYTES + 1, 0);
  }
  const server = await cpu(() => unmaskSum(round, adverts, new Set(shared.keys()), survivors, maskedSum, responses));
  if (server.value.some((x, k) => x !== want[k])) throw new Error(`n ${n}, drops ${dropRate}: the unmasked sum is not the survivors' sum`);
  // Per client: the phases a client takes part in (a dropped one stops after sharing its keys).
  const per = (r: Record<Phase, number>, phase: Phase) => r[phase] / (phase === "masked input" || phase === "unmask" ? survivors.size : n);
  const upTotal = PHASES.reduce((s, p) => s + per(up, p), 0);
  return {
    clients: n,
    degree: round.graph.get(ids[0]!)!.length,
    threshold,
    dropRate,
    survivors: survivors.size,
    cpuMsPerClient: Object.fromEntries(PHASES.map((p) => [p, per(ms, p)])),
    bytesUpPerClient: Object.fromEntries(PHASES.map((p) => [p, per(up, p)])),
    bytesDownPerClient: Object.fromEntries(PHASES.map((p) => [p, per(down, p)])),
    serverUnmaskMs: server.ms,
    expansionUp: upTotal / (4 * LENGTH),
  };
}

type Row = Awaited<ReturnType<typeof run>>;
const rows: (Row | { clients: number; degree: number; dropRate: number; failed: string })[] = [];
/** The largest even degree a graph of n clients can have. */
const most = (n: number) => (n % 2 === 0 ? n - 2 : n - 1);
for (const n of values.clients.split(",").map(Number))
  for (const d of values.drops.split(",").map(Number)) {
    // The default degree; where a client is left with fewer surviving neighbours than the threshold, the
    // round fails (as it must) and the row is kept, then the degree is doubled.
    for (let degree = Math.min(defaultDegree(n), most(n)); ; degree = Math.min(2 * degree, most(n))) {
      process.stderr.write(`n ${n}, degree ${degree}, drops ${d} ...\n`);
      try {
        rows.push(await run(n, d, degree));
        break;
      } catch (e) {
        if (!(e instanceof SecAggError) || e.code !== "below_threshold" || degree === most(n)) throw e;
        rows.push({ clients: n, degree, dropRate: d, failed: e.message });
      }
    }
  }
printTable(
  [
    "clients",
    "degree",
    "t",
    "drops",
    "survivors",
    "CPU ms/client (adv, share, mask, unmask)",
    "KB up/client",
    "KB down/client",
    "server unmask ms",
    "expansion up",
  ],
  rows.map((r) =>
    "failed" in r
      ? [r.clients, r.degree, "", `${100 * r.dropRate}%`, "round fails", r.failed, "", "", "", ""]
      : [
          r.clients,
          r.degree,
          r.threshold,
          `${100 * r.dropRate}%`,
          r.survivors,
          PHASES.map((p) => fmt(r.cpuMsPerClient[p]!, 1)).join(" / "),
          fmt(PHASES.reduce((s, p) => s + r.bytesUpPerClient[p]!, 0) / 1024, 1),
          fmt(PHASES.reduce((s, p) => s + r.bytesDownPerClient[p]!, 0) / 1024, 1),
          fmt(r.serverUnmaskMs, 0),
          fmt(r.expansionUp, 4),
        ],
  ),
);
console.log(`\n${LENGTH} values an update (${(4 * LENGTH) / 1024} KiB as float32); in one Node process, no network.`);
console.log(`wrote ${await writeResults("secagg", { length: LENGTH, rows })}`);
