// SecAgg+'s costs (src/secagg/protocol.ts) for n simulated clients in one Node process, the phases run
// in memory (no network, no aggregator Durable Object yet): per client, the bytes up and down and the CPU
// of each phase; the server's CPU to unmask the sum; the expansion of a client's upload over the plain
// float32 update; for n = 10, 50, 100, 500, the degree 2 ceil(log2 n) and the threshold a majority of
// the neighbours, with 0%, 10% and 30% of the clients dropping after sharing their keys (the costly case:
// the server rebuilds their masking keys and removes their pair masks). Each run also checks that the
// unmasked sum equals the survivors' encoded inputs.
// Run: node bench/secagg.ts [--length 65536] [--clients 10,50,100,500] [--drops 0,0.1,0.3]
import { benchArgs } from "./lib/args.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { encode, fixedPointFor } from "../src/secagg/fixed-point.ts";
import { SecAggError } from "../src/secagg/errors.ts";
import { defaultDegree } from "../src/secagg/graph.ts";
import type { Bytes } from "../src/secagg/keys.ts";
import { type Advert, type RevealedShare, secAggRound } from "../src/secagg/protocol.ts";
import { writeResults } from "./lib/results.ts";
import { PHASES, type Phase, simulateRound, type Traffic } from "./lib/secagg-round.ts";

const { values } = benchArgs({
  options: {
    length: { type: "string", default: "65536" },
    clients: { type: "string", default: "10,50,100,500" },
    drops: { type: "string", default: "0,0.1,0.3" },
  },
});
const LENGTH = Number(values.length);
const ID_BYTES = 10;

/** CPU milliseconds (all threads: WebCrypto works on libuv's pool) of `fn`. */
async function cpu<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = process.cpuUsage();
  const value = await fn();
  const used = process.cpuUsage(start);
  return { value, ms: (used.user + used.system) / 1000 };
}

const advertBytes = (a: Advert) => a.encryptionKey.length + a.maskingKey.length + a.seedDigest.length;

/**
 * A phase's message on the wire: an advert's keys; per peer, its id and its advert, its sealed shares or
 * one revealed share with its kind (a byte); the masked input's words; the unmask request's neighbour ids
 * with a survived-or-dropped byte each.
 */
function bytesOf(t: Traffic["up"] | Traffic["down"]): number {
  if (t === undefined) return 0;
  if (t instanceof Uint32Array) return t.byteLength;
  if (Array.isArray(t)) return t.length * (ID_BYTES + 1);
  if (!(t instanceof Map)) return advertBytes(t as Advert);
  return [...(t as Map<string, Advert | Bytes | RevealedShare>).values()].reduce(
    (s, x) => s + ID_BYTES + (x instanceof Uint8Array ? x.length : "share" in x ? x.share.length + 1 : advertBytes(x)),
    0,
  );
}

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
  let serverMs = 0;
  const { sum, want, survivors } = await simulateRound(
    round,
    ids,
    input,
    { beforeInput: dropped },
    {
      async call(phase, fn) {
        const r = await cpu(fn);
        if (phase === "server") serverMs = r.ms;
        else ms[phase] += r.ms;
        return r.value;
      },
      traffic(phase, _id, t) {
        down[phase] += bytesOf(t.down);
        up[phase] += bytesOf(t.up);
      },
    },
  );
  if (sum.some((x, k) => x !== want[k])) throw new Error(`n ${n}, drops ${dropRate}: the unmasked sum is not the survivors' sum`);
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
    serverUnmaskMs: serverMs,
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
