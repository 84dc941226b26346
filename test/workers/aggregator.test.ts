// The aggregator Durable Object in workerd with real SQLite storage: rounds, exactly-once folding,
// the FedAvg result, every refusal (status, code, nothing changed) and the deadline alarm.
import { env, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { bodyDigest } from "../../src/protocol/signature.ts";
import { federationConfig } from "../fixtures/federation.ts";

const sha256 = bodyDigest;

type Aggregator = ReturnType<typeof env.AGGREGATOR.getByName>;

async function setup(name: string, overrides: Record<string, unknown> = {}) {
  const stub: Aggregator = env.AGGREGATOR.getByName(name);
  const created = await stub.createFederation(federationConfig(name, overrides));
  if (!created.ok) throw new Error(created.error.message);
  const v0 = await stub.getVersion(name, 0);
  if (!v0.ok) throw new Error("no version 0");
  return { stub, global: decodeTensorFile(v0.value, "v0") };
}

function randomDelta(like: TensorMap, seed: number, scale = 0.01): TensorMap {
  const u = seededUniform(seed);
  return new Map([...like].map(([k, t]) => [k, normalSamples(u, t.length, scale)]));
}

let nonce = 0;
async function upload(stub: Aggregator, fed: string, round: number, clientId: string, body: Uint8Array, key = `${clientId}-${round}`) {
  return stub.upload({
    federationId: fed,
    round,
    clientId,
    idempotencyKey: key,
    bodySha256: await sha256(body),
    nonce: (++nonce).toString(16).padStart(16, "0"),
    body,
  });
}

const body = (delta: TensorMap, shapes: Map<string, number[]>, n: number, metrics = '{"train_loss":1.5}') =>
  encodeTensorFile(delta, shapes, { format: "pt", num_examples: String(n), metrics });

describe("aggregator: a FedAvg round", () => {
  it("folds four uploads and closes at quorum with global + the example-weighted mean delta", async () => {
    const { stub, global } = await setup("fedavg-round");
    const opened = await stub.openRound("fedavg-round");
    expect(opened.ok && opened.value).toMatchObject({
      round: 1,
      status: "open",
      baseVersion: 0,
      sampled: ["c1", "c2", "c3", "c4"],
      task: { proximalMu: 0 },
    });
    const weights = [10, 30, 5, 55];
    const deltas = weights.map((_, i) => randomDelta(global.tensors, 100 + i));
    for (let i = 0; i < 4; i++) {
      const r = await upload(stub, "fedavg-round", 1, `c${i + 1}`, body(deltas[i]!, global.shapes, weights[i]!, `{"train_loss":${i + 1}}`));
      expect(r.ok && r.value).toMatchObject({ replayed: false, roundStatus: i < 3 ? "open" : "closed", numExamples: weights[i] });
    }
    const round = await stub.getRound("fedavg-round", 1);
    expect(round.ok && round.value).toMatchObject({
      status: "closed",
      uploads: 4,
      totalWeight: 100,
      result: { version: 1, uploads: 4, totalWeight: 100 },
    });
    // Example-weighted train loss: (10*1 + 30*2 + 5*3 + 55*4) / 100.
    expect(round.ok && (round.value.result as { metrics: Record<string, number> }).metrics.train_loss).toBeCloseTo(3.05, 6);
    const v1 = await stub.getVersion("fedavg-round", 1);
    const next = decodeTensorFile(v1.ok ? v1.value : new Uint8Array(), "v1");
    for (const [name, g] of global.tensors) {
      const got = next.tensors.get(name)!;
      g.forEach((x, j) => {
        const mean = weights.reduce((s, w, i) => s + w * deltas[i]!.get(name)![j]!, 0) / 100;
        expect(got[j]).toBeCloseTo(x + mean, 6);
      });
    }
    expect(await stub.getFederation("fedavg-round")).toMatchObject({ ok: true, value: { version: 1, roundsDone: 1 } });
  });
});

describe("aggregator: refusals change nothing", () => {
  it.each([
    [
      "an unknown client",
      403,
      "client_unknown",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) =>
        upload(s, "refusals", 1, "mallory", body(randomDelta(g.tensors, 1), g.shapes, 5)),
    ],
    [
      "a client not sampled this round",
      403,
      "client_not_sampled",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) => {
        const round = await s.getRound("refusals", 1);
        const left = ["c1", "c2", "c3", "c4", "c5", "c6"].find((c) => round.ok && !round.value.sampled.includes(c))!;
        return upload(s, "refusals", 1, left, body(randomDelta(g.tensors, 1), g.shapes, 5));
      },
    ],
    [
      "a round that does not exist",
      404,
      "round_not_found",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) =>
        upload(s, "refusals", 9, "c1", body(randomDelta(g.tensors, 1), g.shapes, 5)),
    ],
    [
      "bytes that are not safetensors",
      400,
      "safetensors_invalid",
      async (s: Aggregator) => upload(s, "refusals", 1, "c1", new TextEncoder().encode("not a tensor file")),
    ],
    [
      "a tensor of the wrong shape",
      422,
      "tensor_mismatch",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) => {
        const shapes = new Map(g.shapes);
        const [first] = shapes.keys();
        const t = new Map(g.tensors);
        t.set(first!, new Float32Array(g.tensors.get(first!)!.length * 2));
        shapes.set(first!, [shapes.get(first!)![0]! * 2, shapes.get(first!)![1]!]);
        return upload(s, "refusals", 1, "c1", body(t, shapes, 5));
      },
    ],
    [
      "a tensor name the adapter lacks",
      422,
      "tensor_mismatch",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) => {
        const t = new Map(g.tensors).set("base_model.model.extra.weight", new Float32Array(4));
        return upload(s, "refusals", 1, "c1", body(t, new Map(g.shapes).set("base_model.model.extra.weight", [4]), 5));
      },
    ],
    [
      "a NaN in the delta",
      422,
      "non_finite",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) => {
        const t = randomDelta(g.tensors, 3);
        t.values().next().value![7] = NaN;
        return upload(s, "refusals", 1, "c1", body(t, g.shapes, 5));
      },
    ],
    [
      "a missing example count",
      422,
      "metadata_invalid",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) =>
        upload(s, "refusals", 1, "c1", encodeTensorFile(randomDelta(g.tensors, 1), g.shapes, { format: "pt" })),
    ],
    [
      "a body over the federation's limit",
      413,
      "body_too_large",
      async (s: Aggregator, g: ReturnType<typeof decodeTensorFile>) =>
        upload(s, "refusals", 1, "c1", body(randomDelta(g.tensors, 1), g.shapes, 5, JSON.stringify({ pad: 1, x: 2 }).padEnd(20000, " "))),
    ],
  ])("refuses %s with %i %s", async (_, status, code, act) => {
    const name = "refusals";
    let stub = env.AGGREGATOR.getByName(name);
    let global: ReturnType<typeof decodeTensorFile>;
    const existing = await stub.getFederation(name);
    if (!existing.ok) {
      ({ stub, global } = await setup(name, {
        clients: ["c1", "c2", "c3", "c4", "c5", "c6"],
        clientsPerRound: 5,
        seed: 3,
        maxUploadBytes: 16384,
      }));
      await stub.openRound(name);
    } else global = decodeTensorFile(((await stub.getVersion(name, 0)) as { value: Uint8Array }).value, "v0");
    const before = await stub.getRound(name, 1);
    const r = await act(stub, global!);
    expect(r).toMatchObject({ ok: false, error: { status, code } });
    expect(await stub.getRound(name, 1)).toEqual(before);
  });

  it("answers a retried upload with its first receipt, refuses a different second one, and a stale round", async () => {
    const { stub, global } = await setup("retries", { minClients: 1, quorum: 2, clientsPerRound: 3, clients: ["c1", "c2", "c3"] });
    await stub.openRound("retries");
    const first = body(randomDelta(global.tensors, 5), global.shapes, 7);
    const a = await upload(stub, "retries", 1, "c1", first, "key-1");
    const b = await upload(stub, "retries", 1, "c1", first, "key-1");
    expect(a).toMatchObject({ ok: true, value: { replayed: false } });
    expect(b).toMatchObject({ ok: true, value: { replayed: true, numExamples: 7, receivedAt: a.ok ? a.value.receivedAt : -1 } });
    const roundAfter = await stub.getRound("retries", 1);
    expect(roundAfter.ok && roundAfter.value.uploads).toBe(1);
    expect(await upload(stub, "retries", 1, "c1", body(randomDelta(global.tensors, 6), global.shapes, 7), "key-1")).toMatchObject({
      ok: false,
      error: { status: 409, code: "upload_conflict" },
    });
    expect(await upload(stub, "retries", 1, "c1", first, "key-2")).toMatchObject({
      ok: false,
      error: { status: 409, code: "upload_conflict" },
    });
    expect(await stub.getRound("retries", 1)).toEqual(roundAfter);
    // A reused nonce is a replayed request, even with a new key and body.
    const fresh = body(randomDelta(global.tensors, 8), global.shapes, 2);
    const once = await stub.upload({
      federationId: "retries",
      round: 1,
      clientId: "c2",
      idempotencyKey: "k",
      bodySha256: await sha256(fresh),
      nonce: "00000000000000ab",
      body: fresh,
    });
    expect(once.ok).toBe(true);
    // The round closed at quorum: the retry still gets its answer, a late upload is stale.
    expect(await upload(stub, "retries", 1, "c1", first, "key-1")).toMatchObject({
      ok: true,
      value: { replayed: true, roundStatus: "closed" },
    });
    await stub.openRound("retries");
    const replay = await stub.upload({
      federationId: "retries",
      round: 2,
      clientId: "c2",
      idempotencyKey: "k2",
      bodySha256: await sha256(fresh),
      nonce: "00000000000000ab",
      body: fresh,
    });
    expect(replay).toMatchObject({ ok: false, error: { status: 409, code: "nonce_reused" } });
    expect(await upload(stub, "retries", 1, "c3", body(randomDelta(global.tensors, 9), global.shapes, 4), "late")).toMatchObject({
      ok: false,
      error: { status: 409, code: "round_closed" },
    });
  });

  it("refuses a second open round, an invalid config and a duplicate federation", async () => {
    const { stub } = await setup("opening");
    await stub.openRound("opening");
    expect(await stub.openRound("opening")).toMatchObject({ ok: false, error: { status: 409, code: "round_open" } });
    expect(await stub.createFederation(federationConfig("opening"))).toMatchObject({
      ok: false,
      error: { status: 409, code: "federation_exists" },
    });
    const other = env.AGGREGATOR.getByName("bad-config");
    expect(await other.createFederation(federationConfig("bad-config", { strategy: { name: "fedadam", beta1: 2 } }))).toMatchObject({
      ok: false,
      error: { status: 422, code: "config_invalid", message: expect.stringMatching(/beta1/) },
    });
    expect(await other.getFederation("bad-config")).toMatchObject({ ok: false, error: { status: 404, code: "federation_not_found" } });
    // F16 uploads under secure aggregation: its masked inputs are a fixed-point encoding of their own.
    const secure = { secureAggregation: { range: 1, maxWeight: 100 }, uploadDtype: "F16" };
    expect(await other.createFederation(federationConfig("bad-config", secure))).toMatchObject({
      ok: false,
      error: { status: 422, code: "config_invalid", message: expect.stringMatching(/uploadDtype F16: a secure round's masked input/) },
    });
    // Compressed transfers are for methods whose clients upload the change of what they download.
    const fedkseed = { type: "fedkseed", k: 16, trains: { type: "full", tensors: ["model.norm.weight"] } };
    expect(await other.createFederation(federationConfig("bad-config", { method: fedkseed, downloadDtype: "BF16" }))).toMatchObject({
      ok: false,
      error: { status: 422, code: "config_invalid", message: expect.stringMatching(/downloadDtype: method "fedkseed" does not upload/) },
    });
    // Top-k's values go as F32 with their positions: not with another dtype.
    expect(await other.createFederation(federationConfig("bad-config", { topK: 0.1, uploadDtype: "I8" }))).toMatchObject({
      ok: false,
      error: { status: 422, code: "config_invalid", message: expect.stringMatching(/topK: sparse updates send their values as F32/) },
    });
  });
});

describe("aggregator: the deadline alarm", () => {
  it("closes a round with the minimum at its deadline, and fails one below it so the next can open", async () => {
    const { stub, global } = await setup("deadline", { deadlineSeconds: 1, minClients: 2 });
    await stub.openRound("deadline");
    await upload(stub, "deadline", 1, "c1", body(randomDelta(global.tensors, 1), global.shapes, 3));
    await upload(stub, "deadline", 1, "c2", body(randomDelta(global.tensors, 2), global.shapes, 3));
    // workerd fires the alarm at the deadline; running it again finds nothing left to do.
    await new Promise((r) => setTimeout(r, 1100));
    await runDurableObjectAlarm(stub);
    expect(await stub.getRound("deadline", 1)).toMatchObject({ ok: true, value: { status: "closed", result: { version: 1, uploads: 2 } } });
    await stub.openRound("deadline");
    await upload(stub, "deadline", 2, "c3", body(randomDelta(global.tensors, 3), global.shapes, 3));
    await new Promise((r) => setTimeout(r, 1100));
    await runDurableObjectAlarm(stub);
    expect(await stub.getRound("deadline", 2)).toMatchObject({
      ok: true,
      value: { status: "failed", result: { reason: expect.stringMatching(/1 of the 2 uploads/) } },
    });
    expect(await stub.getFederation("deadline")).toMatchObject({ ok: true, value: { version: 1 } });
    expect(await stub.openRound("deadline")).toMatchObject({ ok: true, value: { round: 3, baseVersion: 1 } });
  });
});

describe("aggregator: a close a segment at a time", () => {
  it(`gives what the strategy gives on whole tensors, with its moments carried across rounds (FedAdam, \
an adapter over two segments)`, async () => {
    const { toHfConfig } = await import("../../src/engine/config.ts");
    const { tinyConfig } = await import("../fixtures/tiny-llama.ts");
    const { createStrategy } = await import("../../src/fl/create-strategy.ts");
    const { weightedMean } = await import("../../src/fl/weighted-mean.ts");
    const { SEGMENT } = await import("../../durable-objects/aggregator/accumulator.ts");
    const strategy = { name: "fedadam", eta: 0.05 };
    const model = { name: "tiny-256", config: toHfConfig(tinyConfig({ hidden: 256, intermediate: 512, heads: 4, kvHeads: 2 })) };
    const all7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    const { stub, global } = await setup("segments", {
      model,
      method: { type: "lora", r: 48, alpha: 16, targetModules: all7 },
      strategy,
      clients: ["c1", "c2"],
      clientsPerRound: 2,
      minClients: 1,
    });
    const floats = [...global.tensors.values()].reduce((n, t) => n + t.length, 0);
    expect(floats).toBeGreaterThan(SEGMENT);
    expect(floats % SEGMENT).not.toBe(0);
    let expected = global.tensors;
    let state = { round: 0, slots: new Map() as TensorMap };
    for (let round = 1; round <= 2; round++) {
      await stub.openRound("segments");
      const results = [3, 5].map((n, i) => ({ delta: randomDelta(global.tensors, 40 + 10 * round + i, 0.02), weight: n }));
      for (const [i, r] of results.entries())
        expect((await upload(stub, "segments", round, `c${i + 1}`, body(r.delta, global.shapes, r.weight))).ok).toBe(true);
      const next = createStrategy(strategy).aggregateTrain(expected, weightedMean(results), state);
      ({ global: expected, state } = next);
      const got = decodeTensorFile(((await stub.getVersion("segments", round)) as { value: Uint8Array }).value, `v${round}`);
      expect(got.shapes).toEqual(global.shapes);
      for (const [name, t] of expected) {
        const g = got.tensors.get(name)!;
        let worst = 0;
        for (let i = 0; i < t.length; i++) worst = Math.max(worst, Math.abs(g[i]! - t[i]!));
        expect([name, worst < 1e-6]).toEqual([name, true]);
      }
    }
  });
});
