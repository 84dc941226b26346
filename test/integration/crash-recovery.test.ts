// The coordinator in workerd killed with SIGKILL (a crash, not a shutdown) and started again on the
// same storage: in the middle of a round, in the middle of an upload, and while a round's deadline
// passes. This file acts as the clients itself (signed PUTs of safetensors deltas), and checks that no
// acknowledged upload is lost, none is folded twice, and each round completes with the example-weighted
// mean of exactly the deltas it accepted (recomputed here in float64).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFederation } from "../../cli/local-federation.ts";
import { descendants } from "../../cli/process-tree.ts";
import { toHfConfig } from "../../src/engine/config.ts";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { decodeTensorFile, encodeTensorFile, type TensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { deriveClientSecret, signRequest } from "../../src/protocol/signature.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { secureRound } from "../../bench/lib/secure-clients.ts";
import { flatLayout } from "../../src/fl/flat-tensors.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { meanSegment, ratioSum } from "../../src/secagg/masked-update.ts";
import { tinyConfig } from "../fixtures/tiny-llama.ts";

const MASTER = "crash-master-key";
const CLIENTS = ["c1", "c2", "c3", "c4"];
// Different example counts, so the weighted mean differs from a plain one.
const EXAMPLES = [6, 10, 14, 18];

let root: string;
let fed: LocalFederation;

interface Round {
  status: "open" | "closed" | "failed";
  deadline: number;
  uploads: number;
  totalWeight: number;
  closedAt: number | null;
  result: { version: number; uploads: number; totalWeight: number } | null;
  receipts: { clientId: string; numExamples: number }[];
}

/** One client's update for a round: the same bytes and idempotency key on every attempt. */
interface Update {
  federationId: string;
  round: number;
  clientId: string;
  key: string;
  numExamples: number;
  delta: TensorMap;
  /** ArrayBuffer-backed, as fetch's body types want. */
  body: Uint8Array<ArrayBuffer>;
}

const get = async (path: string) => {
  const res = await fed.coordinator(path);
  expect(res.status, `GET ${path}`).toBe(200);
  return res;
};
const roundOf = async (id: string, round: number) => (await (await get(`/federations/${id}/rounds/${round}`)).json()) as Round;
const versionOf = async (id: string, v: number) =>
  decodeTensorFile(new Uint8Array(await (await get(`/federations/${id}/versions/${v}`)).arrayBuffer()), `${id} v${v}`);

async function createAndOpen(config: Record<string, unknown>): Promise<{ round: Round; v0: TensorFile }> {
  const id = config.id as string;
  expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
  const opened = await fed.coordinator(`/federations/${id}/rounds`, { method: "POST" });
  expect(opened.status).toBe(201);
  return { round: (await opened.json()) as Round, v0: await versionOf(id, 0) };
}

/** Client i's delta on version 0's tensors: seeded normal values, its example count in the metadata. */
function updateOf(federationId: string, v0: TensorFile, i: number): Update {
  const uniform = seededUniform(1000 + i);
  const delta: TensorMap = new Map([...v0.tensors].map(([name, t]) => [name, normalSamples(uniform, t.length, 1e-2)]));
  const numExamples = EXAMPLES[i]!;
  const clientId = CLIENTS[i]!;
  return {
    federationId,
    round: 1,
    clientId,
    key: `${federationId}-${clientId}`,
    numExamples,
    delta,
    body: Uint8Array.from(encodeTensorFile(delta, v0.shapes, { format: "pt", num_examples: String(numExamples), metrics: "{}" })),
  };
}

/**
 * Sends an update as its client would: straight to workerd over HTTP, signed afresh (a new nonce) on
 * every attempt, with the update's idempotency key; the body as bytes or as a stream.
 */
async function send(u: Update, body: BodyInit = u.body): Promise<Response> {
  const path = `/federations/${u.federationId}/rounds/${u.round}/updates/${u.clientId}`;
  const headers = {
    ...(await signRequest(await deriveClientSecret(MASTER, u.clientId), u.clientId, "PUT", path, u.body)),
    "idempotency-key": u.key,
  };
  // Node's fetch sends a stream only with duplex "half", which the DOM typings do not know.
  const init: RequestInit & { duplex: "half" } = { method: "PUT", headers, body, duplex: "half" };
  return fetch(new URL(path, fed.url), init);
}

async function accepted(u: Update): Promise<{ replayed: boolean; roundStatus: string }> {
  const res = await send(u);
  expect(res.status, `${u.clientId}: ${res.status}`).toBe(200);
  return (await res.json()) as { replayed: boolean; roundStatus: string };
}

/**
 * The update's body as a stream of 256 KiB chunks that stops after `upTo` bytes (closing there when
 * that is the whole body): `sent` resolves once those bytes were handed to the connection.
 */
function streamed(u: Update, upTo: number): { stream: ReadableStream<Uint8Array>; sent: Promise<void> } {
  let at = 0;
  let reached!: () => void;
  let unblock = () => {};
  const sent = new Promise<void>((r) => (reached = r));
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= upTo) {
        reached();
        // Hold the rest back until the request dies (cancel).
        return new Promise<void>((r) => (unblock = r));
      }
      const chunk = u.body.subarray(at, Math.min(at + (256 << 10), upTo));
      controller.enqueue(chunk);
      at += chunk.length;
      if (at === u.body.length) {
        controller.close();
        reached();
      }
    },
    cancel: () => unblock(),
  });
  return { stream, sent };
}

/** The version after a round must be v0 + Σ n·Δ / Σ n over exactly these updates (float64 here). */
function expectMean(next: TensorFile, v0: TensorFile, updates: readonly Update[], tolerance = 1e-6): void {
  const total = updates.reduce((s, u) => s + u.numExamples, 0);
  let maxErr = 0;
  for (const [name, base] of v0.tensors) {
    const got = next.tensors.get(name)!;
    for (let i = 0; i < base.length; i++) {
      const mean = updates.reduce((s, u) => s + u.numExamples * u.delta.get(name)![i]!, 0) / total;
      maxErr = Math.max(maxErr, Math.abs(got[i]! - (base[i]! + mean)));
    }
  }
  expect(maxErr).toBeLessThan(tolerance);
}

const clientsOf = (r: Round) => r.receipts.map((x) => x.clientId).sort();

/** Round 1's state once `done` holds, or the last one seen after `timeoutMs` (the caller's assertions then say what is wrong). */
async function roundWhen(id: string, done: (r: Round) => boolean, timeoutMs: number, pauseMs: number): Promise<Round> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await roundOf(id, 1);
    if (done(r) || Date.now() > until) return r;
    await new Promise((res) => setTimeout(res, pauseMs));
  }
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-crash-"));
  fed = await LocalFederation.start({ stateDir: join(root, "state"), masterKey: MASTER, clients: [], modelFiles: new Map() });
}, 120_000);

afterAll(async () => {
  await fed?.dispose();
  rmSync(root, { recursive: true, force: true });
});

// crash() finds workerd through Linux /proc.
describe.skipIf(!existsSync("/proc/net/tcp"))("workerd killed with SIGKILL and started again on the same storage", () => {
  it("mid-round: the acknowledged uploads survive, a retry of one replays without folding twice, the round completes", async () => {
    const id = "crash-mid-round";
    const { v0 } = await createAndOpen(federationConfig(id, { quorum: 4, minClients: 2 }));
    const updates = CLIENTS.map((_, i) => updateOf(id, v0, i));
    for (const u of updates.slice(0, 2)) expect(await accepted(u)).toMatchObject({ replayed: false, roundStatus: "open" });

    await fed.crash();
    // The killed workerd was reaped (no zombie left): only the new one runs.
    expect(descendants(process.pid, "workerd")).toHaveLength(1);

    expect(await roundOf(id, 1)).toMatchObject({ status: "open", uploads: 2, totalWeight: 16 });
    expect(clientsOf(await roundOf(id, 1))).toEqual(["c1", "c2"]);
    expect(await accepted(updates[0]!)).toMatchObject({ replayed: true, roundStatus: "open" });
    expect(await roundOf(id, 1)).toMatchObject({ uploads: 2, totalWeight: 16 });
    expect(await accepted(updates[2]!)).toMatchObject({ replayed: false, roundStatus: "open" });
    expect(await accepted(updates[3]!)).toMatchObject({ replayed: false, roundStatus: "closed" });
    expect(await roundOf(id, 1)).toMatchObject({ status: "closed", uploads: 4, totalWeight: 48, result: { version: 1, uploads: 4 } });
    expectMean(await versionOf(id, 1), v0, updates);
  });

  it("a sharded round: killed between uploads to its shard objects, every acknowledged upload is merged once at the close", async () => {
    const id = "crash-sharded";
    const { v0 } = await createAndOpen(federationConfig(id, { quorum: 4, minClients: 2, shards: 2 }));
    const updates = CLIENTS.map((_, i) => updateOf(id, v0, i));
    for (const u of updates.slice(0, 3)) expect(await accepted(u)).toMatchObject({ replayed: false, roundStatus: "open" });
    await fed.crash();
    expect(await accepted(updates[2]!)).toMatchObject({ replayed: true, roundStatus: "open" });
    expect(await accepted(updates[3]!)).toMatchObject({ replayed: false, roundStatus: "closed" });
    expect(await roundOf(id, 1)).toMatchObject({ status: "closed", uploads: 4, totalWeight: 48, result: { version: 1, uploads: 4 } });
    expect(clientsOf(await roundOf(id, 1))).toEqual(CLIENTS);
    expectMean(await versionOf(id, 1), v0, updates);
  });

  it("a robust round (median): killed between uploads, its kept updates survive and the close takes each coordinate's median", async () => {
    const id = "crash-robust";
    const { v0 } = await createAndOpen(federationConfig(id, { quorum: 4, minClients: 4, robust: { rule: { name: "median" } } }));
    const updates = CLIENTS.map((_, i) => updateOf(id, v0, i));
    for (const u of updates.slice(0, 2)) expect(await accepted(u)).toMatchObject({ replayed: false, roundStatus: "open" });
    await fed.crash();
    expect(await accepted(updates[1]!)).toMatchObject({ replayed: true, roundStatus: "open" });
    expect(await accepted(updates[2]!)).toMatchObject({ replayed: false, roundStatus: "open" });
    expect(await accepted(updates[3]!)).toMatchObject({ replayed: false, roundStatus: "closed" });
    expect(await roundOf(id, 1)).toMatchObject({
      status: "closed",
      uploads: 4,
      result: { version: 1, robust: { rule: "median", updates: 4 } },
    });
    // Four updates: each value is the mean of the two middle ones (float64 here).
    const next = await versionOf(id, 1);
    let worst = 0;
    for (const [name, base] of v0.tensors)
      next.tensors.get(name)!.forEach((x, k) => {
        const sorted = updates.map((u) => u.delta.get(name)![k]!).sort((a, b) => a - b);
        worst = Math.max(worst, Math.abs(x - (base[k]! + (sorted[1]! + sorted[2]!) / 2)));
      });
    expect(worst).toBeLessThan(1e-6);
  });

  it(`mid-upload: a body cut off loses nothing acknowledged; a kill after the last byte folds the update whole or not at all; \
a kill as the round closes keeps the close; retries are accepted once`, async () => {
    const id = "crash-mid-upload";
    // A wider model and rank 64 on every module: uploads of 4 MiB, long enough to be cut off.
    const model = {
      name: "tiny-wide",
      config: toHfConfig(tinyConfig({ hidden: 256, intermediate: 512, layers: 4, heads: 4, kvHeads: 2 })),
    };
    const method = {
      type: "lora",
      r: 64,
      alpha: 128,
      targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    };
    const { v0 } = await createAndOpen(federationConfig(id, { model, method, quorum: 4, minClients: 2 }));
    const updates = CLIENTS.map((_, i) => updateOf(id, v0, i));
    const [u1, u2, u3, u4] = updates as [Update, Update, Update, Update];
    expect(u1.body.length).toBeGreaterThan(4 << 20);
    // c1's upload, streamed as c3's will be, times how long workerd takes from the last byte to the answer.
    const timed = streamed(u1, u1.body.length);
    const first = send(u1, timed.stream);
    await timed.sent;
    const lastByteAt = performance.now();
    const firstAnswer = await first;
    const handlingMs = performance.now() - lastByteAt;
    expect(firstAnswer.status).toBe(200);
    expect(await firstAnswer.json()).toMatchObject({ replayed: false });

    // Killed with half of c2's body sent: the coordinator never had the whole update.
    const half = streamed(u2, u2.body.length >> 1);
    const cutOff = send(u2, half.stream).then(
      (r) => r.status,
      (e: Error) => e,
    );
    await half.sent;
    await fed.crash();
    expect(await cutOff).toBeInstanceOf(Error);
    expect(await roundOf(id, 1)).toMatchObject({ status: "open", uploads: 1, totalWeight: 6 });
    expect(clientsOf(await roundOf(id, 1))).toEqual(["c1"]);

    // Killed after all of c3's body was sent, aimed at the end of its handling, where the fold runs (any
    // point of it is fine: it must be folded whole or not at all, and folded if answered).
    const whole = streamed(u3, u3.body.length);
    const lastByte = send(u3, whole.stream).then(
      (r) => r.status,
      (e: Error) => e,
    );
    await whole.sent;
    await new Promise((r) => setTimeout(r, handlingMs * 0.8));
    await fed.crash();
    const answered = await lastByte;
    const afterKill = await roundOf(id, 1);
    const folded = clientsOf(afterKill).includes("c3");
    process.stderr.write(
      `kill ${(handlingMs * 0.8).toFixed(0)} ms after c3's last byte (c1 took ${handlingMs.toFixed(0)} ms): ` +
        `${answered instanceof Error ? `no answer (${answered.message})` : `answered ${answered}`}, ` +
        `${folded ? "folded" : "absent"} after the restart\n`,
    );
    if (answered === 200) expect(folded).toBe(true);
    expect(afterKill).toMatchObject({ status: "open", uploads: folded ? 2 : 1, totalWeight: folded ? 20 : 6 });
    expect(clientsOf(afterKill)).toEqual(folded ? ["c1", "c3"] : ["c1"]);

    // The clients retry with the same idempotency keys.
    expect(await accepted(u2)).toMatchObject({ replayed: false, roundStatus: "open" });
    expect(await accepted(u3)).toMatchObject({ replayed: folded, roundStatus: "open" });

    // c4 completes the quorum; killed the moment the round shows closed, whether or not c4 had its answer.
    const closing = send(u4).then(
      (r) => r.status,
      (e: Error) => e,
    );
    expect(await roundWhen(id, (r) => r.status !== "open", 30_000, 0)).toMatchObject({ status: "closed" });
    await fed.crash();
    const closingAnswer = await closing;
    process.stderr.write(
      `kill as the round closed: c4 ` +
        `${closingAnswer instanceof Error ? `had no answer (${closingAnswer.message})` : `was answered ${closingAnswer}`}\n`,
    );
    expect(await accepted(u4)).toMatchObject({ replayed: true, roundStatus: "closed" });
    const closed = await roundOf(id, 1);
    expect(closed).toMatchObject({ status: "closed", uploads: 4, totalWeight: 48, result: { version: 1, uploads: 4, totalWeight: 48 } });
    expect(clientsOf(closed)).toEqual(CLIENTS);
    expectMean(await versionOf(id, 1), v0, updates);
  });

  it(`deadline while down: the persisted alarm fires after the restart and closes the round \
with the two acknowledged uploads`, async () => {
    const id = "crash-deadline";
    // deadlineSeconds' minimum is 1; 4 leaves room to upload and kill before it passes on a busy machine.
    const { round, v0 } = await createAndOpen(federationConfig(id, { quorum: 4, minClients: 2, deadlineSeconds: 4 }));
    const updates = CLIENTS.slice(0, 2).map((_, i) => updateOf(id, v0, i));
    for (const u of updates) expect(await accepted(u)).toMatchObject({ replayed: false, roundStatus: "open" });
    // The kill must land before the deadline, or the alarm could have closed the round already.
    expect(Date.now()).toBeLessThan(round.deadline - 250);

    // Down until a second past the deadline.
    await fed.crash(round.deadline + 1000 - Date.now());
    const restartedAt = Date.now();

    const r = await roundWhen(id, (x) => x.status !== "open", 20_000, 100);
    expect(r).toMatchObject({ status: "closed", uploads: 2, totalWeight: 16, result: { version: 1, uploads: 2, totalWeight: 16 } });
    expect(clientsOf(r)).toEqual(["c1", "c2"]);
    expect(r.closedAt!).toBeGreaterThanOrEqual(round.deadline + 1000);
    process.stderr.write(
      `deadline round closed ${r.closedAt! - round.deadline} ms after its deadline, ` +
        `${Date.now() - restartedAt} ms after workerd was back\n`,
    );
    expectMean(await versionOf(id, 1), v0, updates);
  });

  it("a secure round (SecAgg+): killed before each phase and between two masked inputs, it unmasks and closes exactly", async () => {
    const id = "crash-secure";
    const { v0 } = await createAndOpen(federationConfig(id, { secureAggregation: { maxWeight: 20 }, minClients: 2 }));
    const version = new Uint8Array(await (await get(`/federations/${id}/versions/0`)).arrayBuffer());
    const updates = new Map(CLIENTS.map((c, i) => [c, updateOf(id, v0, i).body]));
    const signedFetch = async (client: string, method: "GET" | "PUT", path: string, body?: Uint8Array, headers = {}) => {
      const signature = await signRequest(await deriveClientSecret(MASTER, client), client, method, path, body);
      const res = await fetch(new URL(path, fed.url), {
        method,
        headers: { ...signature, ...headers },
        ...(body ? { body: Uint8Array.from(body) } : {}),
      });
      expect(res.ok, `${client} ${method} ${path}: ${res.status} ${await res.clone().text()}`).toBe(true);
      return res;
    };
    const at = (c: string) => `/federations/${id}/rounds/1/secagg/${c}`;
    const crashes: string[] = [];
    const { want, enc, survivors } = await secureRound(
      {
        view: async (c) => (await signedFetch(c, "GET", at(c))).json(),
        send: async (c, kind, message) =>
          void (await signedFetch(c, "PUT", `${at(c)}/${kind}`, new TextEncoder().encode(JSON.stringify(message)))),
        upload: async (c, body) =>
          void (await signedFetch(c, "PUT", `/federations/${id}/rounds/1/updates/${c}`, body, { "idempotency-key": c })),
        close: async () => void expect((await fed.coordinator(`/federations/${id}/rounds/1/close`, { method: "POST" })).ok).toBe(true),
      },
      CLIENTS,
      updates,
      {
        before: async (phase) => {
          await fed.crash();
          crashes.push(phase);
        },
        afterInput: async (_c, i) => {
          if (i !== 1) return;
          await fed.crash();
          crashes.push("input 2 of 4");
        },
      },
    );
    expect(crashes).toEqual(["share", "input", "input 2 of 4", "unmask"]);
    const r = await roundWhen(id, (x) => x.status !== "open", 20_000, 100);
    expect(r).toMatchObject({ status: "closed", uploads: 4, totalWeight: 48, result: { version: 1, uploads: 4 } });
    // The version is v0 + the mean decoded from the plain sum of the four quantized inputs, bit for bit.
    const ratios = ratioSum(want[enc.values]!, enc, survivors.length);
    const mean = meanSegment(want.subarray(0, enc.values), enc, survivors.length, ratios);
    const next = await versionOf(id, 1);
    const layout = flatLayout(readSafetensorsHeader(version));
    for (const t of layout.tensors) expect(next.tensors.get(t.name)).toEqual(v0.tensors.get(t.name)!.map((x, i) => x + mean[t.start + i]!));
    expectMean(
      next,
      v0,
      CLIENTS.map((_, i) => updateOf(id, v0, i)),
      1e-6,
    );
  });
});
