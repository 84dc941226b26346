// A secure federation (SecAgg+) in workerd, through the coordinator's routes and the aggregator's SQLite:
// ten clients on a sparse graph run the four phases with the project's client functions, some dropping
// before their masked input; the version equals FedAvg over the unmasked sum of the survivors' quantized
// updates bit for bit, and the plain federation's version within the quantization; what the aggregator
// stores of an input is only ever masked.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { flatLayout } from "../../src/fl/flat-tensors.ts";
import { decodeTensorFile, encodeTensorFile, type TensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import type { SecAggView } from "../../src/protocol/secure-aggregation.ts";
import { advertMessage } from "../../src/secagg/client.ts";
import { meanSegment, ratioSum } from "../../src/secagg/masked-update.ts";
import { advertise } from "../../src/secagg/protocol.ts";
import { privacySpent } from "../../src/privacy/rdp.ts";
import { type SecureTransport, secureRound } from "../../bench/lib/secure-clients.ts";
import { api, signed } from "./coordinator-api.ts";
import { federationConfig } from "../fixtures/federation.ts";

const CLIENTS = Array.from({ length: 10 }, (_, i) => `c${i}`);
const EXAMPLES = [5, 40, 12, 80, 33, 7, 60, 21, 95, 50];
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

async function create(id: string, overrides: Record<string, unknown>) {
  const res = await api("/federations", {
    method: "POST",
    body: JSON.stringify(
      federationConfig(id, { clients: CLIENTS, clientsPerRound: 10, minClients: 3, maxExamplesPerClient: 100, ...overrides }),
    ),
  });
  expect(res.status, await res.clone().text()).toBe(201);
}
const version = async (id: string, v: number) =>
  decodeTensorFile(new Uint8Array(await (await api(`/federations/${id}/versions/${v}`)).arrayBuffer()), `v${v}`);
const versionBytes = async (id: string, v: number) => new Uint8Array(await (await api(`/federations/${id}/versions/${v}`)).arrayBuffer());

/** Client i's delta: normal values of std 0.02, the same for the secure federation and its plain twin. */
const deltaOf = (global: TensorFile, i: number, round: number) =>
  encodeTensorFile(
    new Map([...global.tensors].map(([k, t], j) => [k, normalSamples(seededUniform(1000 * round + 10 * i + j), t.length, 0.02)])),
    global.shapes,
    { format: "pt", num_examples: String(EXAMPLES[i]), metrics: '{"train_loss":1}' },
  );

const path = (fed: string, round: number, client: string) => `/federations/${fed}/rounds/${round}/secagg/${client}`;
const put = (p: string, client: string, message: object) =>
  signed(p, client, { method: "PUT", body: new TextEncoder().encode(JSON.stringify(message)) });
/** Every body the coordinator returned to a client or the operator in these tests. */
const responses: string[] = [];
async function view(fed: string, round: number, client: string): Promise<SecAggView> {
  const res = await signed(path(fed, round, client), client);
  responses.push(await res.clone().text());
  expect(res.status, responses.at(-1)).toBe(200);
  return res.json();
}
async function ok(res: Promise<Response>): Promise<{ phase: string; replayed: boolean }> {
  const r = await res;
  responses.push(await r.clone().text());
  expect(r.ok, responses.at(-1)).toBe(true);
  return r.json();
}

/**
 * Every line the coordinator and the aggregator logged: vitest's workers pool runs the main worker and its
 * Durable Objects in the tests' isolate, so spies on console see what they log (calls go through).
 */
const spies: { mock: { calls: unknown[][] } }[] = [];
const logged = () =>
  spies.flatMap((s) => s.mock.calls.map((args) => args.map((a) => (a instanceof Error ? a.stack : String(a))).join(" ")));
beforeAll(() => {
  for (const level of ["log", "info", "warn", "error", "debug"] as const) spies.push(vi.spyOn(console, level));
});

/** How a client's plain input could appear in a text: its words in hex, base64 and decimal, its first float. */
function probesOf(plain: Uint32Array, update: Uint8Array): string[] {
  const bytes = new Uint8Array(plain.buffer, plain.byteOffset, 48);
  const first = decodeTensorFile(update, "update").tensors.values().next().value!;
  return [
    Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join(""),
    btoa(String.fromCharCode(...bytes)),
    Array.from(plain.subarray(0, 3)).join(","),
    String(first[0]),
    btoa(String.fromCharCode(...new Uint8Array(first.buffer, first.byteOffset, 48))),
  ];
}
/** The responses and log lines that hold any of the probes. */
const leaks = (probes: readonly string[]) => [...responses, ...logged()].filter((text) => probes.some((p) => text.includes(p)));

/** The clients' transport: signed requests to the coordinator inside workerd. */
const transport = (fed: string, round: number): SecureTransport => ({
  view: (c) => view(fed, round, c),
  send: async (c, kind, message) => void (await ok(put(`${path(fed, round, c)}/${kind}`, c, message))),
  upload: async (c, body) =>
    void (await ok(
      signed(`/federations/${fed}/rounds/${round}/updates/${c}`, c, {
        method: "PUT",
        body,
        headers: { "idempotency-key": `${c}-${round}` },
      }),
    )),
  close: async () => void (await ok(api(`/federations/${fed}/rounds/${round}/close`, { method: "POST" }))),
});

/** The plain federation's round with the same deltas from the same clients. */
async function plainRound(fed: string, round: number, dropped: ReadonlySet<string>) {
  const global = await version(fed, round - 1);
  for (const [i, c] of CLIENTS.entries()) {
    if (dropped.has(c)) continue;
    const res = await signed(`/federations/${fed}/rounds/${round}/updates/${c}`, c, {
      method: "PUT",
      body: deltaOf(global, i, round),
      headers: { "idempotency-key": `${c}-${round}` },
    });
    expect(res.status, await res.clone().text()).toBe(200);
  }
  if (dropped.size) await ok(api(`/federations/${fed}/rounds/${round}/close`, { method: "POST" }));
}

describe("a secure federation (SecAgg+) in workerd", () => {
  it("with 0%, 10% and 30% dropouts before the masked input: FedAvg over the exact sum, near the plain federation", async () => {
    const secure = { secureAggregation: { range: 1, maxWeight: 100 }, rounds: 3, quorum: 10 };
    await create("sec-a", secure);
    await create("plain-a", { rounds: 3 });
    const drops = [new Set<string>(), new Set(["c4"]), new Set(["c1", "c5", "c8"])];
    const probes: string[] = [];
    for (const [k, dropped] of drops.entries()) {
      const round = k + 1;
      for (const fed of ["sec-a", "plain-a"]) await ok(api(`/federations/${fed}/rounds`, { method: "POST" }));
      const before = await version("sec-a", round - 1);
      const afterInput =
        round === 1
          ? async (_c: string, i: number, plain: Uint32Array, masked: Uint32Array) => {
              if (i > 0) return;
              probes.push(...probesOf(plain, updates.get("c0")!));
              // After the first masked input the aggregator holds it only masked: the ring sum is y, and the
              // plain encoding's bytes are nowhere in its storage.
              await runInDurableObject(env.AGGREGATOR.getByName("sec-a"), (_i, state) => {
                const rows = state.storage.sql.exec<{ key: string; data: ArrayBuffer }>("SELECT key, data FROM blobs").toArray();
                const sum = rows.find((r) => r.key === "sum/sec-a/1")!;
                expect(new Uint32Array(sum.data.slice(0, 4 * masked.length))).toEqual(masked);
                const probe = new Uint8Array(plain.buffer, 0, 64);
                for (const r of rows) expect(indexOf(new Uint8Array(r.data), probe)).toBe(-1);
              });
              // Indistinguishable from uniform: the masked words' bytes pass a chi-square test at p = 0.001 (255 dof).
              expect(chiSquare(new Uint8Array(masked.buffer))).toBeLessThan(330.5);
              expect(chiSquare(new Uint8Array(plain.buffer))).toBeGreaterThan(1000);
            }
          : undefined;
      const global = await versionBytes("sec-a", round - 1);
      const globalFile = decodeTensorFile(global, "global");
      const updates = new Map(CLIENTS.map((c, i) => [c, deltaOf(globalFile, i, round)]));
      const r0 = await secureRound(transport("sec-a", round), CLIENTS, updates, { dropped, afterInput });
      const { want, enc } = r0;
      const survivors = r0.survivors.length;
      await plainRound("plain-a", round, dropped);
      const r = await (await api(`/federations/sec-a/rounds/${round}`)).json<{ status: string; phase: string; totalWeight: number }>();
      expect([r.status, r.phase]).toEqual(["closed", "unmasking"]);
      expect(r.totalWeight).toBe(EXAMPLES.filter((_, i) => !dropped.has(CLIENTS[i]!)).reduce((a, b) => a + b, 0));
      // Bit for bit: the version is FedAvg (x + mean, float32) of the mean decoded from the plain sum of the
      // survivors' quantized inputs, so the unmasked sum was exactly that sum.
      const ratios = ratioSum(want[enc.values]!, enc, survivors);
      const mean = meanSegment(want.subarray(0, enc.values), enc, survivors, ratios);
      const after = await version("sec-a", round);
      const layout = flatLayout(readSafetensorsHeader(await versionBytes("sec-a", round)));
      for (const t of layout.tensors) {
        const expected = before.tensors.get(t.name)!.map((x, i) => x + mean[t.start + i]!);
        expect(after.tensors.get(t.name)).toEqual(expected);
      }
      // Against the plain federation: each value within the encoding's rounding of the weighted mean.
      const plain = await version("plain-a", round);
      const unit = (2 * enc.fp.range) / (2 ** enc.fp.bits - 1);
      const bound = (survivors * unit) / ratios + 1e-6;
      let worst = 0;
      for (const [name, t] of after.tensors) {
        const base = (await version("plain-a", round - 1)).tensors.get(name)!;
        const b = before.tensors.get(name)!;
        const p = plain.tensors.get(name)!;
        t.forEach((x, i) => {
          worst = Math.max(worst, Math.abs(x - b[i]! - (p[i]! - base[i]!)));
        });
      }
      expect(worst).toBeLessThan(bound);
      expect(worst).toBeGreaterThan(0);
    }
    // Nothing returned or logged holds client 0's plain input.
    expect(probes).toHaveLength(5);
    expect(leaks(probes)).toEqual([]);
  });

  it("with distributed DP: clients clip and noise before masking; the version is the unit-weight sum over m; ε per round", async () => {
    const privacy = { mode: "distributed", clip: 0.05, noiseMultiplier: 0.5, delta: 1e-5 };
    await create("sec-dp", { secureAggregation: {}, privacy, rounds: 2 });
    await ok(api("/federations/sec-dp/rounds", { method: "POST" }));
    const v = await view("sec-dp", 1, "c0");
    // Each client's noise: z S / √t, t = max(threshold 5, minClients 3); the range holds S and 6 of it.
    const std = (0.5 * 0.05) / Math.sqrt(5);
    expect(v.noise).toEqual({ clip: 0.05, std });
    expect([v.maxWeight, v.range]).toEqual([1, 1]);
    const dropped = new Set(["c2"]);
    const global = await versionBytes("sec-dp", 0);
    const before = decodeTensorFile(global, "v0");
    const updates = new Map(CLIENTS.map((c, i) => [c, deltaOf(before, i, 1)]));
    const { want, enc, survivors } = await secureRound(transport("sec-dp", 1), CLIENTS, updates, { dropped });
    const r = await (await api("/federations/sec-dp/rounds/1")).json<{
      status: string;
      totalWeight: number;
      result: { privacy: { epsilon: number } };
    }>();
    expect([r.status, r.totalWeight]).toEqual(["closed", 9]);
    expect(r.result.privacy.epsilon).toBeCloseTo(privacySpent({ sampleRate: 1, noiseMultiplier: 0.5, steps: 1 }, 1e-5).epsilon, 10);
    // Unit weights: the decoded ratios sum to the 9 survivors, the mean is rescaled to the 10 expected.
    expect(ratioSum(want[enc.values]!, enc, survivors.length)).toBeCloseTo(9, 6);
    const mean = meanSegment(want.subarray(0, enc.values), enc, survivors.length, 9).map((x) => x * (9 / 10));
    const after = await version("sec-dp", 1);
    for (const t of flatLayout(readSafetensorsHeader(global)).tensors)
      expect(after.tensors.get(t.name)).toEqual(before.tensors.get(t.name)!.map((x, i) => x + mean[t.start + i]!));
    // The change is the clipped updates' mean plus noise of std about σ_c √9 / 10 per value, not the plain mean.
    const change = [...after.tensors].flatMap(([name, t]) => Array.from(t, (x, i) => x - before.tensors.get(name)![i]!));
    const sd = Math.sqrt(change.reduce((s, x) => s + x * x, 0) / change.length);
    expect(sd).toBeGreaterThan((0.5 * std * 3) / 10);
    expect(sd).toBeLessThan((1.5 * std * 3) / 10 + 0.05 / Math.sqrt(change.length));
  });

  it("leaves out one responder's wrong shares; fails the round with its reason, not the request, when two send them", async () => {
    await create("sec-d", { secureAggregation: {}, rounds: 3 });
    // The garbling survivors copy, for each peer, another responder's share coordinate (a share's last byte):
    // those shares then repeat an x, which the Shamir package refuses with an error of its own.
    const probes: string[] = [];
    const roundWith = async (round: number, garblers: readonly string[]) => {
      await ok(api("/federations/sec-d/rounds", { method: "POST" }));
      const global = decodeTensorFile(await versionBytes("sec-d", round - 1), "global");
      const updates = new Map(CLIENTS.map((c, i) => [c, deltaOf(global, i, round)]));
      const sent = new Map<string, { shares: Record<string, { kind: string; share: string }> }>();
      const t = transport("sec-d", round);
      const garbling: SecureTransport = {
        ...t,
        send: async (c, kind, message) => {
          if (kind !== "unmask") return t.send(c, kind, message);
          const m = message as { shares: Record<string, { kind: string; share: string }> };
          if (round === 1 && c === "c9") {
            // First a key share asked as a seed share (every peer survived): refused, nothing stored.
            const flipped = { shares: Object.fromEntries(Object.entries(m.shares).map(([p, s]) => [p, { ...s, kind: "key" }])) };
            const res = await put(`${path("sec-d", round, c)}/unmask`, c, flipped);
            expect([res.status, (await error(res)).message]).toEqual([
              422,
              expect.stringMatching(/reveals a key share of .* asks for its seed share/),
            ]);
          }
          if (garblers.includes(c))
            for (const [peer, s] of Object.entries(m.shares)) {
              const other = [...sent.values()].find((x) => x.shares[peer])?.shares[peer];
              if (other) s.share = s.share.slice(0, -2) + other.share.slice(-2);
            }
          sent.set(c, m);
          return t.send(c, kind, m);
        },
      };
      await secureRound(garbling, CLIENTS, updates, {
        afterInput: async (c, _i, plain) => void probes.push(...probesOf(plain, updates.get(c)!)),
      });
      return (await api(`/federations/sec-d/rounds/${round}`)).json<{ status: string; result: { reason?: string } }>();
    };
    // One responder's bad shares are left out (t others remain): the round closes.
    expect((await roundWith(1, ["c9"])).status).toBe("closed");
    // Two: no secret rebuilds from all but one share; the round fails with its reason and the next opens.
    const r = await roundWith(2, ["c8", "c9"]);
    expect([r.status, r.result.reason]).toEqual([
      "failed",
      expect.stringMatching(/^unmasking failed: .*do not rebuild the one it advertised/),
    ]);
    // The aggregator logged the failure (the spies see its lines), and neither a log line nor a response
    // holds any client's plain input, though its secrets were being rebuilt when the round failed.
    expect(logged()).toContainEqual(expect.stringContaining(`round 2 failed: ${r.result.reason}`));
    expect(probes).toHaveLength(5 * 20);
    expect(leaks(probes)).toEqual([]);
    await ok(api("/federations/sec-d/rounds", { method: "POST" }));
  });

  it("refuses messages out of their phase, shares for strangers, a second different message, and fails below the threshold", async () => {
    await create("sec-b", { secureAggregation: {}, rounds: 2 });
    await ok(api("/federations/sec-b/rounds", { method: "POST" }));
    const v = await view("sec-b", 1, "c0");
    expect([v.phase, v.threshold, v.neighbours.length, v.roster]).toEqual(["advertise", 5, 8, undefined]);
    const a = await advertise("c0");
    const early = await put(`${path("sec-b", 1, "c0")}/shares`, "c0", { shares: {} });
    expect([early.status, (await error(early)).code]).toEqual([409, "phase_closed"]);
    await ok(put(`${path("sec-b", 1, "c0")}/advert`, "c0", advertMessage(a.advert)));
    expect((await ok(put(`${path("sec-b", 1, "c0")}/advert`, "c0", advertMessage(a.advert)))).replayed).toBe(true);
    const other = await put(`${path("sec-b", 1, "c0")}/advert`, "c0", advertMessage((await advertise("c0")).advert));
    expect([other.status, (await error(other)).code]).toEqual([409, "upload_conflict"]);
    const bad = await put(`${path("sec-b", 1, "c1")}/advert`, "c1", { encryptionKey: "00", maskingKey: "11", seedDigest: "22" });
    expect([bad.status, (await error(bad)).code]).toEqual([422, "message_invalid"]);
    // A low-order key (the zero point) would break every neighbour's masks: refused.
    const low = await put(`${path("sec-b", 1, "c1")}/advert`, "c1", {
      ...advertMessage((await advertise("c1")).advert),
      maskingKey: "0".repeat(64),
    });
    expect([low.status, (await error(low)).message]).toEqual([422, expect.stringMatching(/maskingKey is not a usable X25519 public key/)]);
    const forged = await signed(path("sec-b", 1, "c1"), "c0");
    expect(forged.status).toBe(403);
    // Only four advertise by the phase's end: the round needs the threshold (5) and fails with its reason.
    for (const c of ["c1", "c2", "c3"]) await ok(put(`${path("sec-b", 1, c)}/advert`, c, advertMessage((await advertise(c)).advert)));
    await ok(api("/federations/sec-b/rounds/1/close", { method: "POST" }));
    const r = await (await api("/federations/sec-b/rounds/1")).json<{ status: string; result: { reason: string } }>();
    expect([r.status, r.result.reason]).toEqual([
      "failed",
      "only 4 clients advertised keys in the advertise phase; the round needs 5 (threshold and minClients)",
    ]);
    const late = await put(`${path("sec-b", 1, "c4")}/advert`, "c4", advertMessage((await advertise("c4")).advert));
    expect([late.status, (await error(late)).code]).toEqual([409, "phase_closed"]);
    // Round 2: five advertise, the operator ends the phase; a client that did not advertise cannot share.
    await ok(api("/federations/sec-b/rounds", { method: "POST" }));
    for (const c of ["c0", "c1", "c2", "c3", "c4"])
      await ok(put(`${path("sec-b", 2, c)}/advert`, c, advertMessage((await advertise(c)).advert)));
    await ok(api("/federations/sec-b/rounds/2/close", { method: "POST" }));
    expect((await view("sec-b", 2, "c0")).phase).toBe("share");
    const stranger = await put(`${path("sec-b", 2, "c5")}/shares`, "c5", { shares: {} });
    expect([stranger.status, (await error(stranger)).code]).toEqual([403, "not_in_phase"]);
    // Shares to some of the neighbours that advertised only: each pair mask must be added by both or neither.
    const advertised = (await view("sec-b", 2, "c0")).neighbours.filter((j) => ["c1", "c2", "c3", "c4"].includes(j));
    expect(advertised.length).toBeGreaterThan(1);
    const some = await put(`${path("sec-b", 2, "c0")}/shares`, "c0", {
      shares: Object.fromEntries(advertised.slice(1).map((j) => [j, "ab".repeat(94)])),
    });
    expect([some.status, (await error(some)).message]).toEqual([422, expect.stringContaining(`holds none for "${advertised[0]}"`)]);
  });

  it("is refused at creation with central DP, or with a threshold the graph cannot meet", async () => {
    for (const [overrides, message] of [
      [
        { secureAggregation: {}, privacy: { clip: 1, noiseMultiplier: 1 } },
        /privacy with secureAggregation: central DP clips each update where the aggregator sees it in the clear/,
      ],
      [{ secureAggregation: { threshold: 9 } }, /secureAggregation: the threshold is a whole number in \[5, 8\]/],
      [
        {
          secureAggregation: {},
          method: { type: "fedkseed", k: 64, labels: ["a", "b"], trains: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] } },
        },
        /method "fedkseed" uploads in a format of its own .*: lora, offsite, fedbpt, discrete$/,
      ],
      [{ privacy: { mode: "distributed", clip: 1, noiseMultiplier: 1 } }, /privacy: mode "distributed" needs secureAggregation/],
      [
        { secureAggregation: {}, privacy: { mode: "distributed", clip: 1, noiseMultiplier: 1, adaptiveClip: {} } },
        /privacy: adaptiveClip with mode "distributed"/,
      ],
      [{ secureAggregation: { degree: 4, threshold: 2 } }, /secureAggregation: the threshold is a whole number in \[3, 4\]/],
    ] as const) {
      const res = await api("/federations", {
        method: "POST",
        body: JSON.stringify(federationConfig("sec-c", { clients: CLIENTS, clientsPerRound: 10, ...overrides })),
      });
      expect([res.status, (await error(res)).message]).toEqual([422, expect.stringMatching(message)]);
    }
  });
});

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Pearson's chi-square of the bytes against the uniform distribution over 256 values. */
function chiSquare(bytes: Uint8Array): number {
  const counts = new Float64Array(256);
  for (const b of bytes) counts[b]!++;
  const expected = bytes.length / 256;
  return counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
}
