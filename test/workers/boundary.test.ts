// The coordinator at its boundary, in workerd with the real aggregator: every route's credential, what a
// request that cannot be valid costs (nothing read, no object touched), every number a client sends
// bounded, and the platform limits local workerd does not enforce, each refusal leaving the state as it was.
import { listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import app from "../../workers/coordinator/index.ts";
import { guardedSql, StorageLimitError } from "../../durable-objects/shared/guarded-sql.ts";
import { readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { MAX_ADAPTER_BYTES, MAX_UPLOAD_BYTES } from "../../src/protocol/platform-limits.ts";
import { deriveClientSecret, HEADERS, signRequest } from "../../src/protocol/signature.ts";
import { anonymous, api, MASTER_KEY, OPERATOR_TOKEN, signed, signedPut, viewerApi } from "./coordinator-api.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { malformedBearers } from "../fixtures/malformed-bearer.ts";
import { dropVersions } from "../../workers/coordinator/version-store.ts";

const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const create = async (id: string, overrides: Record<string, unknown> = {}) => {
  const res = await api("/federations", { method: "POST", body: JSON.stringify(federationConfig(id, overrides)) });
  expect(res.status).toBe(201);
};
const v0 = async (id: string) => decodeTensorFile(new Uint8Array(await (await api(`/federations/${id}/versions/0`)).arrayBuffer()), "v0");
const deltaBody = (global: Awaited<ReturnType<typeof v0>>, value: number, metadata: Record<string, string>) =>
  encodeTensorFile(new Map([...global.tensors].map(([k, t]) => [k, t.map(() => value)])), global.shapes, { format: "pt", ...metadata });
/** A safetensors file of `n` zero-size tensors: a valid file whose header is as long as an attacker likes. */
function emptyTensors(n: number): Uint8Array {
  const entries = Array.from({ length: n }, (_, i) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
  const json = new TextEncoder().encode(`{"__metadata__":{"num_examples":"1"},${entries.join(",")}}`);
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}
/** Everything a refusal must leave unchanged: the federation and its round. */
const snapshot = async (id: string) => [
  await (await api(`/federations/${id}`)).text(),
  await (await api(`/federations/${id}/rounds/1`)).text(),
];

describe("credentials on every route", async () => {
  await create("auth-1");
  await api("/federations/auth-1/rounds", { method: "POST" });
  const routes: [string, string][] = [
    ["POST", "/federations"],
    ["GET", "/federations"],
    ["GET", "/federations/auth-1"],
    ["DELETE", "/federations/auth-1"],
    ["GET", "/federations/auth-1/metrics"],
    ["GET", "/federations/auth-1/plot.svg"],
    ["GET", "/federations/auth-1/evaluation.svg"],
    ["POST", "/federations/auth-1/rounds"],
    ["GET", "/federations/auth-1/rounds/1"],
    ["POST", "/federations/auth-1/rounds/1/close"],
    ["POST", "/federations/auth-1/rounds/1/fail"],
    ["GET", "/federations/auth-1/versions/0"],
    ["GET", "/federations/auth-1/versions/0/adapter_model.safetensors"],
    ["GET", "/federations/auth-1/versions/0/adapter_config.json"],
    ["GET", "/federations/auth-1/versions/0/seeds"],
    ["PUT", "/federations/auth-1/versions/0"],
    ["GET", "/federations/auth-1/rounds/1/secagg/c1"],
    ["PUT", "/federations/auth-1/rounds/1/secagg/c1/advert"],
    ["PUT", "/federations/auth-1/rounds/1/secagg/c1/shares"],
    ["PUT", "/federations/auth-1/rounds/1/secagg/c1/unmask"],
  ];

  it.each(routes)("%s %s without a credential is 401 and changes nothing", async (method, path) => {
    const before = await snapshot("auth-1");
    const res = await anonymous(path, { method, ...(method === "GET" ? {} : { body: "{}" }) });
    expect(res.status).toBe(401);
    expect((await error(res)).message).toMatch(/token|signature/);
    expect(await snapshot("auth-1")).toEqual(before);
  });

  it("refuses a wrong token, and the viewer's token on what changes a federation", async () => {
    const wrong = await anonymous("/federations", { headers: { authorization: "Bearer not-the-token-0123456789" } });
    expect([wrong.status, (await error(wrong)).code]).toEqual([401, "unauthorized"]);
    for (const [method, path] of routes.filter(([m]) => m !== "GET")) {
      const res = await viewerApi(path, { method, body: "{}" });
      expect([method, path, res.status]).toEqual([method, path, 401]);
    }
    expect((await viewerApi("/federations")).status).toBe(200);
    expect((await viewerApi("/federations/auth-1/metrics")).status).toBe(200);
  });

  it("refuses a malformed Authorization header, even around the operator's token, as having no credential", async () => {
    for (const authorization of malformedBearers(OPERATOR_TOKEN)) {
      const res = await anonymous("/federations", { method: "POST", body: "{}", headers: { authorization } });
      expect([authorization, res.status, (await error(res)).message]).toEqual([
        authorization,
        401,
        "this route needs the operator's token (Authorization: Bearer $FEDFLARE_OPERATOR_TOKEN)",
      ]);
    }
  });

  it("lets a member client read its federation's rounds and versions, and no one else's", async () => {
    await create("auth-2", { clients: ["zed"], clientsPerRound: 1, minClients: 1 });
    expect((await signed("/federations/auth-1/rounds/1", "c1")).status).toBe(200);
    expect((await signed("/federations/auth-1/versions/0", "c1")).status).toBe(200);
    const other = await signed("/federations/auth-2/versions/0", "c1");
    expect([other.status, (await error(other)).message]).toEqual([403, 'client "c1" is not a member of federation "auth-2"']);
    // A client's signature is no operator: it reads, it does not open rounds or list federations.
    expect((await signed("/federations/auth-1/rounds", "c1", { method: "POST" })).status).toBe(401);
    expect((await signed("/federations", "c1")).status).toBe(401);
    // What a member reads: what it needs to train, nothing of the other clients (their counts, the round's metrics).
    const round = (await (await signed("/federations/auth-1/rounds/1", "c1")).json()) as Record<string, unknown>;
    expect(Object.keys(round).sort()).toEqual([
      "baseVersion",
      "deadline",
      "federationId",
      "openedAt",
      "phase",
      "round",
      "sampled",
      "status",
      "task",
    ]);
    expect(round.sampled).toEqual(["c1"]);
    // The task names the federation by its creation too: a client keeps its state per federation under both.
    const { createdAt } = (await (await viewerApi("/federations/auth-1")).json()) as { createdAt: number };
    expect((round.task as { createdAt: number }).createdAt).toBe(createdAt);
    expect(await (await signed("/federations/auth-1", "c1")).json()).toEqual({
      id: "auth-1",
      version: 0,
      roundsDone: 0,
      openRound: 1,
      evaluate: [],
    });
    expect(Object.keys(await (await viewerApi("/federations/auth-1/rounds/1")).json())).toEqual(
      expect.arrayContaining(["receipts", "result", "totalWeight"]),
    );
    const forged = await signed("/federations/auth-1/versions/0", "c1", { secretOf: "c2" });
    expect([forged.status, (await error(forged)).code]).toEqual([401, "signature_invalid"]);
  });

  it("answers 503 naming the secret when the coordinator has none, before touching any object", async () => {
    const { FEDFLARE_OPERATOR_TOKEN: _o, FEDFLARE_VIEWER_TOKEN: _v, FEDFLARE_MASTER_KEY: _m, ...bare } = env;
    const before = (await listDurableObjectIds(env.AGGREGATOR)).length;
    const cases: [string, RequestInit, string][] = [
      ["/federations", { method: "POST", body: "{}", headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } }, "FEDFLARE_OPERATOR_TOKEN"],
      ["/federations", { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } }, "FEDFLARE_OPERATOR_TOKEN"],
      [
        "/federations/auth-1/rounds/1/updates/c1",
        { method: "PUT", headers: { [HEADERS.client]: "c1", "idempotency-key": "k" }, body: "x" },
        "FEDFLARE_MASTER_KEY",
      ],
    ];
    for (const [path, init, secret] of cases) {
      const res = await app.request(`http://coordinator${path}`, init, bare);
      expect(res.status).toBe(503);
      expect((await error(res)).message).toContain(`set the secret ${secret}`);
    }
    expect((await listDurableObjectIds(env.AGGREGATOR)).length).toBe(before);
  });
});

/** A body of `bytes` made as it is read, and how much of it was read. */
function countedBody(bytes: number) {
  let pulled = 0;
  const chunk = new Uint8Array(64 * 1024);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= bytes) return controller.close();
      pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return { body, pulled: () => pulled };
}

/** Signed headers of client c1 with a signature of zeros. */
const forgedHeaders = (timestamp: string) => ({
  [HEADERS.client]: "c1",
  [HEADERS.timestamp]: timestamp,
  [HEADERS.nonce]: "00".repeat(16),
  [HEADERS.signature]: "00".repeat(32),
  [HEADERS.contentSha256]: "00".repeat(32),
  "idempotency-key": "k",
});

describe("checks before reading", () => {
  it("refuses an unauthenticated 200 MiB upload from its headers, reading almost none of it", async () => {
    await create("read-1");
    const { body, pulled } = countedBody(200 * 2 ** 20);
    const res = await anonymous("/federations/read-1/rounds/1/updates/c1", {
      method: "PUT",
      headers: forgedHeaders("1"),
      body,
      duplex: "half",
    } as RequestInit);
    expect([res.status, (await error(res)).code]).toEqual([401, "signature_expired"]);
    expect(pulled()).toBeLessThan(2 ** 20);
  });

  it(`checks a member's signature from its headers before reading the body: \
a forged one is refused having read almost none of it`, async () => {
    await create("read-3");
    const { body, pulled } = countedBody(30 * 2 ** 20);
    const res = await anonymous("/federations/read-3/rounds/1/updates/c1", {
      method: "PUT",
      headers: forgedHeaders(String(Math.floor(Date.now() / 1000))),
      body,
      duplex: "half",
    } as RequestInit);
    expect([res.status, (await error(res)).code]).toEqual([401, "signature_invalid"]);
    expect(pulled()).toBeLessThan(2 ** 20);
  });

  it("refuses a body that is not the one its signature covers", async () => {
    await create("read-4");
    await api("/federations/read-4/rounds", { method: "POST" });
    const before = await snapshot("read-4");
    const good = deltaBody(await v0("read-4"), 0.1, { num_examples: "10" });
    const path = "/federations/read-4/rounds/1/updates/c1";
    const headers = { ...(await signRequest(await deriveClientSecret(MASTER_KEY, "c1"), "c1", "PUT", path, good)), "idempotency-key": "k" };
    const swapped = good.slice();
    swapped[swapped.length - 1] = swapped[swapped.length - 1]! ^ 1;
    const res = await anonymous(path, { method: "PUT", headers, body: swapped });
    expect([res.status, (await error(res)).code]).toEqual([400, "body_mismatch"]);
    expect(await snapshot("read-4")).toEqual(before);
    expect(
      (
        await anonymous(path, {
          method: "PUT",
          headers: { ...(await signRequest(await deriveClientSecret(MASTER_KEY, "c1"), "c1", "PUT", path, good)), "idempotency-key": "k" },
          body: good,
        })
      ).status,
    ).toBe(200);
  });

  it("refuses a declared Content-Length over the federation's cap at once", async () => {
    await create("read-2", { maxUploadBytes: 8192 });
    await api("/federations/read-2/rounds", { method: "POST" });
    const before = await snapshot("read-2");
    const res = await signedPut("/federations/read-2/rounds/1/updates/c1", new Uint8Array(16384), "c1");
    expect([res.status, (await error(res)).message]).toEqual([413, "the body is 16384 bytes; at most 8192 are accepted"]);
    expect(await snapshot("read-2")).toEqual(before);
  });

  it("tells a forged signature nothing of which federations or members exist, and reads no body spoken for another client", async () => {
    await create("read-6", { maxUploadBytes: 8192 });
    await api("/federations/read-6/rounds", { method: "POST" });
    const before = await snapshot("read-6");
    // Without the client's secret: the same 401 for an unknown federation, a non-member and a member.
    for (const [path, client] of [
      ["/federations/ghost-x/versions/0", "c1"],
      ["/federations/read-6/versions/0", "outsider"],
      ["/federations/read-6/versions/0", "c1"],
    ] as const) {
      const res = await signed(path, client, { secretOf: "c2" });
      expect([path, client, res.status, (await error(res)).code]).toEqual([path, client, 401, "signature_invalid"]);
    }
    // A member signing for another client's upload, or for a round that is no number, is refused before its
    // body (over the federation's cap, so reading it would answer 413) is read.
    const big = new Uint8Array(16384);
    const other = await signedPut("/federations/read-6/rounds/1/updates/c2", big, "c1");
    expect([other.status, (await error(other)).message]).toEqual([403, 'signed by "c1" but the path names "c2"']);
    const badRound = await signedPut("/federations/read-6/rounds/1x/updates/c1", big, "c1");
    expect([badRound.status, (await error(badRound)).message]).toEqual([400, 'round must be a non-negative integer, got "1x"']);
    expect(await snapshot("read-6")).toEqual(before);
  });

  it("touches no Durable Object for 200 requests naming unknown federations", async () => {
    const before = (await listDurableObjectIds(env.AGGREGATOR)).map((id) => id.toString()).sort();
    for (let i = 0; i < 100; i++) expect((await anonymous(`/federations/ghost-${i}/versions/0`)).status).toBe(401);
    for (let i = 0; i < 100; i++) {
      const res = await viewerApi(`/federations/ghost-${i}`);
      expect([res.status, (await error(res)).code]).toEqual([404, "federation_not_found"]);
    }
    expect((await listDurableObjectIds(env.AGGREGATOR)).map((id) => id.toString()).sort()).toEqual(before);
  });

  it("refuses a JSON body over 1 MiB with 413, from its Content-Length or as it streams past the cap", async () => {
    await create("read-5");
    for (const path of ["/federations", "/federations/read-5/rounds/1/fail"]) {
      const declared = await api(path, { method: "POST", body: " ".repeat(2 ** 20 + 1) });
      expect([path, declared.status, await error(declared)]).toEqual([
        path,
        413,
        { code: "payload_too_large", message: "the body is 1048577 bytes; at most 1048576 are accepted" },
      ]);
      const { body, pulled } = countedBody(8 * 2 ** 20);
      const streamed = await api(path, { method: "POST", body, duplex: "half" } as RequestInit);
      expect([path, streamed.status, await error(streamed)]).toEqual([
        path,
        413,
        { code: "payload_too_large", message: "the body exceeds 1048576 bytes" },
      ]);
      expect(pulled()).toBeLessThan(2 * 2 ** 20);
    }
  });

  it("refuses JSON nested 100,000 deep with a 400", async () => {
    const res = await api("/federations", { method: "POST", body: "[".repeat(100_000) + "]".repeat(100_000) });
    expect([res.status, (await error(res)).message]).toEqual([400, "the body nests 100000 levels deep; at most 32 are accepted"]);
  });
});

describe("every number a client sends is bounded", async () => {
  await create("bound-1", { maxExamplesPerClient: 1000 });
  await api("/federations/bound-1/rounds", { method: "POST" });
  const global = await v0("bound-1");
  const put = (client: string, body: Uint8Array) => signedPut(`/federations/bound-1/rounds/1/updates/${client}`, body, client);

  it.each([
    [
      "num_examples 9,999,999,999",
      () => deltaBody(global, 1, { num_examples: "9999999999" }),
      422,
      "metadata_invalid",
      /num_examples 9999999999 is over this federation's maxExamplesPerClient \(1000\)/,
    ],
    [
      "metrics of 2.8 MiB",
      () => deltaBody(global, 0.1, { num_examples: "10", metrics: JSON.stringify({ train_loss: 1, pad: "x".repeat(2.8 * 2 ** 20) }) }),
      422,
      "header_too_large",
      /metrics of at most 2048 characters/,
    ],
    [
      "metrics of 3 KiB",
      () => deltaBody(global, 0.1, { num_examples: "10", metrics: JSON.stringify({ train_loss: 1, pad: "x".repeat(3072) }) }),
      422,
      "metadata_invalid",
      /metrics.*at most 2048 characters/,
    ],
    [
      "17 metrics",
      () =>
        deltaBody(global, 0.1, {
          num_examples: "10",
          metrics: JSON.stringify(Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`m${i}`, i]))),
        }),
      422,
      "metadata_invalid",
      /at most 16 metrics/,
    ],
    [
      "a train loss of 1e308 (its weighted mean would be Infinity)",
      () => deltaBody(global, 0.1, { num_examples: "10", metrics: '{"train_loss": 1e308}' }),
      422,
      "metadata_invalid",
      /field "train_loss": a metric lies in \[-1e12, 1e12\]/,
    ],
    [
      "a header of 20,000 empty tensors (its parse would cost memory in proportion)",
      () => emptyTensors(20_000),
      422,
      "header_too_large",
      /header length \d+ bytes is over the cap of \d+ bytes/,
    ],
    [
      "float32 values of 3e38, which overflow once weighted",
      () => deltaBody(global, 3e38, { num_examples: "10" }),
      422,
      "non_finite",
      /overflow/,
    ],
  ])("refuses %s and keeps the round as it was", async (_, body, status, code, message) => {
    const before = await snapshot("bound-1");
    const res = await put("c1", body());
    expect(res.status).toBe(status);
    expect(await error(res)).toMatchObject({ code, message: expect.stringMatching(message) });
    expect(await snapshot("bound-1")).toEqual(before);
  });

  it("keeps a round's result small whatever metric names clients report: the 32 most reported", async () => {
    const clients = Array.from({ length: 4 }, (_, i) => `m${i}`);
    await create("bound-2", { clients, clientsPerRound: 4, minClients: 1 });
    await api("/federations/bound-2/rounds", { method: "POST" });
    const g = await v0("bound-2");
    for (const [i, c] of clients.entries()) {
      const metrics = Object.fromEntries([["train_loss", 1 + i], ...Array.from({ length: 15 }, (_, j) => [`c${i}_m${j}`, j])]);
      expect(
        (
          await signedPut(
            `/federations/bound-2/rounds/1/updates/${c}`,
            deltaBody(g, 0.1, { num_examples: "10", metrics: JSON.stringify(metrics) }),
            c,
          )
        ).status,
      ).toBe(200);
    }
    const result = ((await (await api("/federations/bound-2/rounds/1")).json()) as { result: { metrics: Record<string, number> } }).result
      .metrics;
    expect(Object.keys(result)).toHaveLength(32);
    expect(result.train_loss).toBeCloseTo(2.5, 6);
  });

  it("still folds a good upload after the refusals", async () => {
    const res = await put("c1", deltaBody(global, 0.5, { num_examples: "1000" }));
    expect(res.status).toBe(200);
    expect(await (await api("/federations/bound-1/rounds/1")).json()).toMatchObject({ uploads: 1, totalWeight: 1000 });
  });
});

describe("FedKSeed uploads", () => {
  it("refuse a seed-sum header longer than two tensors and their metadata need", async () => {
    await create("ks-bound", {
      method: { type: "fedkseed", k: 64, trains: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] } },
      clients: ["c1"],
      clientsPerRound: 1,
      minClients: 1,
    });
    await api("/federations/ks-bound/rounds", { method: "POST" });
    const before = await snapshot("ks-bound");
    const res = await signedPut("/federations/ks-bound/rounds/1/updates/c1", emptyTensors(5_000), "c1");
    expect([res.status, (await error(res)).message]).toEqual([422, expect.stringMatching(/over the cap of 65536 bytes/)]);
    expect(await snapshot("ks-bound")).toEqual(before);
  });
});

/** A 4096-wide model of the fixture's depth: its adapters are large enough to meet the creation limits. */
const WIDE = {
  name: "wide",
  config: {
    ...(federationConfig("x").model as { config: Record<string, unknown> }).config,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_attention_heads: 32,
    num_key_value_heads: 8,
  },
};

describe("limits checked at creation", () => {
  it.each([
    ["an upload cap over what one RPC call carries", { maxUploadBytes: 64 * 2 ** 20 }, /maxUploadBytes.*33488896/],
    ["a learning rate of 1e300", { local: { steps: 2, batchSize: 2, lr: 1e300 } }, /local\.lr/],
    [
      "hidden_size 1e12",
      {
        model: {
          name: "huge",
          config: {
            ...(federationConfig("x").model as { config: Record<string, unknown> }).config,
            hidden_size: 1e12,
            intermediate_size: 1e12,
          },
        },
      },
      /hidden_size 1000000000000 is over the 16384/,
    ],
    [
      "an adapter over what one RPC call carries",
      {
        method: {
          type: "lora",
          r: 256,
          alpha: 16,
          targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        },
        model: WIDE,
      },
      new RegExp(`may be at most ${MAX_ADAPTER_BYTES} bytes`),
    ],
    [
      "100,000 kept versions of a 4096-wide model's adapter (past half an object's storage)",
      {
        keepVersions: 100_000,
        method: { type: "lora", r: 8, alpha: 16, targetModules: ["q_proj"] },
        model: WIDE,
      },
      /keepVersions: 100001 versions of \d+ bytes .* keep at most \d+ versions/,
    ],
  ])("refuses %s with 422, naming the largest that fits", async (_, overrides, message) => {
    const id = `limit-${Math.random().toString(36).slice(2)}`;
    const res = await api("/federations", { method: "POST", body: JSON.stringify(federationConfig(id, overrides)) });
    expect(res.status).toBe(422);
    expect(await error(res)).toMatchObject({ code: "config_invalid", message: expect.stringMatching(message) });
    // Nothing was created: no federation left unusable.
    expect((await api(`/federations/${id}`)).status).toBe(404);
    expect(MAX_UPLOAD_BYTES).toBe(32 * 2 ** 20 - 65536);
  });
});

describe("the platform's 2 MB SQLite value limit", () => {
  it("is enforced by the guard local SQLite lacks, and blobs stay under it by chunking", async () => {
    await runInDurableObject(env.AGGREGATOR.getByName("guard-test"), (_instance, state) => {
      const sql = guardedSql(state.storage.sql);
      const big = new Uint8Array(2_200_000);
      expect(() => sql.exec("INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?)", "k", 0, big)).toThrow(StorageLimitError);
      expect(() => sql.exec("INSERT INTO federations (id, config, created_at) VALUES (?, ?, 0)", "f", "x".repeat(2_000_001))).toThrow(
        /over the platform's 2000000-byte limit/,
      );
      expect(() =>
        sql.exec(
          "INSERT INTO receipts (federation_id, round, client_id, idempotency_key, body_sha256, num_examples, metrics, received_at, " +
            "fold_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          "f",
          1,
          "c",
          "k".repeat(1_000_000),
          "s",
          1,
          "m".repeat(1_000_001),
          0,
          0,
        ),
      ).toThrow(/together, over the platform's 2000000-byte limit on a row/);
      // Unguarded, local SQLite takes what production refuses: the reason for the guard.
      state.storage.sql.exec("INSERT INTO blobs (key, chunk, data) VALUES (?, ?, ?)", "raw", 0, big);
      const value = new Uint8Array(5_000_000).map((_, i) => i % 251);
      writeBlob(sql, "chunked", value);
      expect(readBlob(sql, "chunked")).toEqual(value);
    });
  });
});

describe("the platform's 32 MiB RPC limit on a federation's metrics", () => {
  it("pages the rounds' results under 4 MiB past the first round, whatever their count, and the plot reads every page", async () => {
    await create("pages-1");
    // Twelve failed rounds whose results are 1.5 MB each: 18 MB in all, too much for one answer at scale.
    await runInDurableObject(env.AGGREGATOR.getByName("pages-1"), (_instance, state) => {
      for (let r = 1; r <= 12; r++)
        state.storage.sql.exec(
          "INSERT INTO rounds (federation_id, round, status, base_version, sampled, opened_at, deadline, closed_at, result) " +
            "VALUES (?, ?, 'failed', 0, '[]', 0, 0, 1, ?)",
          "pages-1",
          r,
          JSON.stringify({ reason: "x".repeat(1_500_000) }),
        );
    });
    const page = async (query: string) => {
      const res = await viewerApi(`/federations/pages-1/metrics${query}`);
      expect(res.status, query).toBe(200);
      return ((await res.json()) as { round: number }[]).map((r) => r.round);
    };
    // Two rounds' results are 3 MB, a third's would pass 4 MiB: pages of two, then none.
    const seen: number[][] = [];
    for (let rounds = await page(""); rounds.length > 0; rounds = await page(`?from=${rounds.at(-1)! + 1}`)) seen.push(rounds);
    expect(seen).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
      [7, 8],
      [9, 10],
      [11, 12],
    ]);
    expect(await page("?from=5&limit=1")).toEqual([5]);
    for (const query of ["?from=x", "?limit=0", "?limit=1001"]) {
      const res = await viewerApi(`/federations/pages-1/metrics${query}`);
      expect([query, res.status, (await error(res)).code]).toEqual([query, 400, "bad_request"]);
    }
    expect((await viewerApi("/federations/pages-1/plot.svg")).status).toBe(200);
  });
});

describe("rounds that cannot get stuck", () => {
  it("closes a round now with what it has, or refuses below the minimum; fails it; refuses uploads after", async () => {
    await create("ops-1", { clientsPerRound: 4, minClients: 2 });
    await api("/federations/ops-1/rounds", { method: "POST" });
    const global = await v0("ops-1");
    expect((await signedPut("/federations/ops-1/rounds/1/updates/c1", deltaBody(global, 0.5, { num_examples: "10" }), "c1")).status).toBe(
      200,
    );
    const short = await api("/federations/ops-1/rounds/1/close", { method: "POST" });
    expect([short.status, (await error(short)).code]).toEqual([409, "round_short"]);
    expect((await signedPut("/federations/ops-1/rounds/1/updates/c2", deltaBody(global, 1.5, { num_examples: "30" }), "c2")).status).toBe(
      200,
    );
    const closed = await api("/federations/ops-1/rounds/1/close", { method: "POST" });
    expect(await closed.json()).toMatchObject({ status: "closed", uploads: 2, result: { version: 1 } });
    const v1 = decodeTensorFile(new Uint8Array(await (await api("/federations/ops-1/versions/1")).arrayBuffer()), "v1");
    // (10 * 0.5 + 30 * 1.5) / 40 = 1.25 added to every value.
    for (const [k, t] of global.tensors) expect(v1.tensors.get(k)![0]).toBeCloseTo(t[0]! + 1.25, 6);

    await api("/federations/ops-1/rounds", { method: "POST" });
    const failed = await api("/federations/ops-1/rounds/2/fail", {
      method: "POST",
      body: JSON.stringify({ reason: "client c3 is compromised" }),
    });
    expect(await failed.json()).toMatchObject({ status: "failed", result: { reason: "failed by the operator: client c3 is compromised" } });
    const late = await signedPut("/federations/ops-1/rounds/2/updates/c1", deltaBody(v1, 0.1, { num_examples: "10" }), "c1");
    expect([late.status, (await error(late)).code]).toEqual([409, "round_closed"]);
  });

  it("refuses uploads once the deadline has passed, before the alarm has run", async () => {
    await create("ops-2");
    await api("/federations/ops-2/rounds", { method: "POST" });
    await runInDurableObject(
      env.AGGREGATOR.getByName("ops-2"),
      (_i, state) => void state.storage.sql.exec("UPDATE rounds SET deadline = ?", Date.now() - 1000),
    );
    const res = await signedPut("/federations/ops-2/rounds/1/updates/c1", deltaBody(await v0("ops-2"), 0.1, { num_examples: "10" }), "c1");
    expect([res.status, (await error(res)).message]).toEqual([409, expect.stringMatching(/passed its deadline/)]);
  });

  it("marks a round whose close throws failed, with the reason, and opens the next", async () => {
    await create("ops-3", { clientsPerRound: 2, clients: ["c1", "c2"], minClients: 1 });
    await api("/federations/ops-3/rounds", { method: "POST" });
    const global = await v0("ops-3");
    // A server state naming a slot whose values are gone: the close cannot apply the strategy.
    await runInDurableObject(
      env.AGGREGATOR.getByName("ops-3"),
      (_i, state) => void state.storage.sql.exec("UPDATE federations SET server_slots = '[\"m\"]'"),
    );
    expect((await signedPut("/federations/ops-3/rounds/1/updates/c1", deltaBody(global, 0.5, { num_examples: "10" }), "c1")).status).toBe(
      200,
    );
    const res = await signedPut("/federations/ops-3/rounds/1/updates/c2", deltaBody(global, 0.5, { num_examples: "10" }), "c2");
    expect(await res.json()).toMatchObject({ roundStatus: "failed" });
    const round = (await (await api("/federations/ops-3/rounds/1")).json()) as { status: string; result: { reason: string } };
    expect(round.status).toBe("failed");
    expect(round.result.reason).toMatch(/^closing failed: blob "state\/ops-3\/m" has no bytes/);
    expect(await (await api("/federations/ops-3")).json()).toMatchObject({ version: 0, openRound: null });
    expect((await api("/federations/ops-3/rounds", { method: "POST" })).status).toBe(201);
  });

  it("fails a round whose strategy would write infinities into the next version, and keeps the version", async () => {
    await create("ops-6", { clientsPerRound: 1, clients: ["c1"], minClients: 1, strategy: { name: "fedadam", eta: 1e39 } });
    await api("/federations/ops-6/rounds", { method: "POST" });
    const res = await signedPut("/federations/ops-6/rounds/1/updates/c1", deltaBody(await v0("ops-6"), 0.5, { num_examples: "10" }), "c1");
    expect(await res.json()).toMatchObject({ roundStatus: "failed" });
    const round = (await (await api("/federations/ops-6/rounds/1")).json()) as { result: { reason: string } };
    expect(round.result.reason).toMatch(/^closing failed: fedadam: new global: .*Infinity/);
    expect(await (await api("/federations/ops-6")).json()).toMatchObject({ version: 0 });
    expect((await api("/federations/ops-6/versions/1")).status).toBe(404);
  });

  it("keeps version 0 and the latest keepVersions versions", async () => {
    await create("ops-4", { clientsPerRound: 1, clients: ["c1"], minClients: 1, rounds: 4, keepVersions: 2 });
    for (let round = 1; round <= 4; round++) {
      await api("/federations/ops-4/rounds", { method: "POST" });
      expect(
        (
          await signedPut(`/federations/ops-4/rounds/${round}/updates/c1`, deltaBody(await v0("ops-4"), 0.1, { num_examples: "1" }), "c1", {
            key: `k${round}`,
          })
        ).status,
      ).toBe(200);
    }
    const present = await Promise.all([0, 1, 2, 3, 4].map(async (v) => (await api(`/federations/ops-4/versions/${v}`)).status));
    expect(present).toEqual([200, 404, 404, 200, 200]);
  });

  it("keeps the receipts and samples of the latest keepRoundDetail rounds, closed or failed; older rounds keep their counts", async () => {
    await create("ops-8", { clients: ["c1", "c2"], clientsPerRound: 2, minClients: 1, quorum: 2, rounds: 5, keepRoundDetail: 2 });
    const detailRows = () =>
      runInDurableObject(env.AGGREGATOR.getByName("ops-8"), (_i, state) =>
        ["receipts", "round_clients"].map((table) =>
          state.storage.sql
            .exec<{ round: number }>(`SELECT DISTINCT round FROM ${table} ORDER BY round`)
            .toArray()
            .map((r) => r.round),
        ),
      );
    for (let round = 1; round <= 4; round++) {
      await api("/federations/ops-8/rounds", { method: "POST" });
      // Round 3 fails: c1 alone, then the operator fails it.
      for (const c of round === 3 ? ["c1"] : ["c1", "c2"]) {
        const body = deltaBody(await v0("ops-8"), 0.1, { num_examples: "3" });
        expect((await signedPut(`/federations/ops-8/rounds/${round}/updates/${c}`, body, c, { key: `k${round}` })).status).toBe(200);
      }
      if (round === 3) expect((await api("/federations/ops-8/rounds/3/fail", { method: "POST" })).status).toBe(200);
      // Rounds up to round − 2 have no detail left, whether the round that ended closed or failed.
      expect(await detailRows()).toEqual([
        [1, 2, 3, 4].filter((r) => r <= round && r > round - 2),
        [1, 2, 3, 4].filter((r) => r <= round && r > round - 2),
      ]);
    }
    const view = async (round: number) =>
      (await (await api(`/federations/ops-8/rounds/${round}`)).json()) as {
        detail: string;
        sampled: string[];
        receipts: unknown[];
        uploads: number;
        totalWeight: number;
        result: { version: number };
      };
    expect(await view(2)).toMatchObject({
      detail: "dropped",
      sampled: [],
      receipts: [],
      uploads: 2,
      totalWeight: 6,
      result: { version: 2 },
    });
    expect(await view(3)).toMatchObject({ detail: "kept", sampled: ["c1", "c2"], uploads: 1 });
    expect((await view(4)).receipts).toHaveLength(2);
    // A late upload to a dropped round is refused as closed, not as from a client the round did not sample.
    const late = await signedPut("/federations/ops-8/rounds/1/updates/c2", deltaBody(await v0("ops-8"), 0.1, { num_examples: "3" }), "c2", {
      key: "late",
    });
    expect([late.status, (await error(late)).code]).toEqual([409, "round_closed"]);
  });

  it("drops a backlog of old detail over several closes, at most 25,000 rows of a table each", async () => {
    await create("ops-11", { clients: ["c1"], clientsPerRound: 1, minClients: 1, rounds: 5, keepRoundDetail: 2 });
    // 30,000 receipts of a round 0, as a federation from before the limit would hold.
    const stub = env.AGGREGATOR.getByName("ops-11");
    await runInDurableObject(stub, (_i, state) => {
      for (let i = 0; i < 30_000; i++)
        state.storage.sql.exec(
          "INSERT INTO receipts (federation_id, round, client_id, idempotency_key, body_sha256, num_examples, metrics, received_at, " +
            "fold_ms) VALUES ('ops-11', 0, ?, 'k', 's', 1, '{}', 0, 0)",
          `x${i}`,
        );
    });
    const receiptsUpTo = (round: number) =>
      runInDurableObject(stub, (_i, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM receipts WHERE round <= ?", round).one().n);
    const counts = [];
    for (let round = 1; round <= 4; round++) {
      await api("/federations/ops-11/rounds", { method: "POST" });
      const body = deltaBody(await v0("ops-11"), 0.1, { num_examples: "3" });
      expect((await signedPut(`/federations/ops-11/rounds/${round}/updates/c1`, body, "c1", { key: `k${round}` })).status).toBe(200);
      counts.push(await receiptsUpTo(0));
    }
    // Round 2's close drops round 0's detail, 25,000 rows of it; round 3's close the rest.
    expect(counts).toEqual([30_000, 5_000, 0, 0]);
  });

  it("keeps a failed round's detail by default, though round numbers then pass the federation's rounds", async () => {
    await create("ops-10", { clients: ["c1"], clientsPerRound: 1, minClients: 1, rounds: 1 });
    await api("/federations/ops-10/rounds", { method: "POST" });
    expect((await api("/federations/ops-10/rounds/1/fail", { method: "POST" })).status).toBe(200);
    await api("/federations/ops-10/rounds", { method: "POST" });
    const body = deltaBody(await v0("ops-10"), 0.1, { num_examples: "3" });
    expect((await signedPut("/federations/ops-10/rounds/2/updates/c1", body, "c1")).status).toBe(200);
    const failed = (await (await api("/federations/ops-10/rounds/1")).json()) as { status: string; detail: string; sampled: string[] };
    expect(failed).toMatchObject({ status: "failed", detail: "kept", sampled: ["c1"] });
  });

  it("refuses a keepRoundDetail whose receipts and evaluation reports could pass a tenth of the storage, naming what fits", async () => {
    const clients = Array.from({ length: 10_000 }, (_, i) => `c${i}`);
    const res = await api("/federations", {
      method: "POST",
      body: JSON.stringify(
        federationConfig("ops-9", { clients, clientsPerRound: 10_000, minClients: 1, rounds: 100, keepRoundDetail: 100 }),
      ),
    });
    expect(res.status).toBe(422);
    // 1e9 bytes / (10,000 clients × 3,584 bytes a receipt and sample + 10,000 × 2,048 an evaluation report) = 17.8 rounds.
    expect((await error(res)).message).toMatch(/^keepRoundDetail: 100 rounds of 10000 clients' receipts .* keep at most 17 rounds/);
  });

  it("finishes a delete cut off half-way, whichever half was done, and a re-create then starts afresh", async () => {
    // The registry forgot it, the object still holds it.
    await create("ops-7", { clients: ["c1", "c2"], clientsPerRound: 2, minClients: 1 });
    await api("/federations/ops-7/rounds", { method: "POST" });
    await env.AGGREGATOR.getByName("_registry").unregister("ops-7");
    expect(await (await api("/federations/ops-7", { method: "DELETE" })).json()).toEqual({ deleted: "ops-7" });
    await create("ops-7", { clients: ["c9"], clientsPerRound: 1, minClients: 1 });
    expect(await (await api("/federations/ops-7")).json()).toMatchObject({ openRound: null, config: { clients: ["c9"] } });
    // The object was emptied, the registry still names it.
    expect((await env.AGGREGATOR.getByName("ops-7").deleteFederation("ops-7")).ok).toBe(true);
    expect((await api("/federations/ops-7")).status).toBe(404);
    expect(await (await api("/federations/ops-7", { method: "DELETE" })).json()).toEqual({ deleted: "ops-7" });
    expect(await env.AGGREGATOR.getByName("_registry").lookup("ops-7")).toBeNull();
    const again = await api("/federations/ops-7", { method: "DELETE" });
    expect([again.status, (await error(again)).code]).toEqual([404, "federation_not_found"]);
  });

  it("deletes a federation with its storage; its id then names nothing", async () => {
    await create("ops-5");
    await api("/federations/ops-5/rounds", { method: "POST" });
    const res = await api("/federations/ops-5", { method: "DELETE" });
    expect(await res.json()).toEqual({ deleted: "ops-5" });
    expect((await api("/federations/ops-5")).status).toBe(404);
    expect(((await (await api("/federations")).json()) as { id: string }[]).map((f) => f.id)).not.toContain("ops-5");
    await runInDurableObject(env.AGGREGATOR.getByName("ops-5"), (_i, state) => {
      expect(state.storage.sql.exec("SELECT COUNT(*) AS n FROM blobs").one().n).toBe(0);
      expect(state.storage.sql.exec("SELECT COUNT(*) AS n FROM rounds").one().n).toBe(0);
    });
    expect(await runInDurableObject(env.AGGREGATOR.getByName("ops-5"), (_i, state) => state.storage.getAlarm())).toBeNull();
    await create("ops-5");
  });
});

describe("versions served as streams", () => {
  it("serves a version over several storage chunks whole, with its length, as the object stores it", async () => {
    const { toHfConfig } = await import("../../src/engine/config.ts");
    const { tinyConfig } = await import("../fixtures/tiny-llama.ts");
    const model = { name: "tiny-256", config: toHfConfig(tinyConfig({ hidden: 256, intermediate: 512, heads: 4, kvHeads: 2 })) };
    await create("stream-1", {
      model,
      method: {
        type: "lora",
        r: 48,
        alpha: 16,
        targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
      },
    });
    const res = await api("/federations/stream-1/versions/0");
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes.length).toBeGreaterThan(2 ** 20);
    expect(Number(res.headers.get("content-length"))).toBe(bytes.length);
    const stored = await env.AGGREGATOR.getByName("stream-1").getVersion("stream-1", 0);
    expect(stored.ok && bytes).toEqual(stored.ok && stored.value);
    const missing = await api("/federations/stream-1/versions/7");
    expect([missing.status, (await error(missing)).code]).toEqual([404, "version_not_found"]);
  });
});

describe("a gateway's stale registry entry", () => {
  it("admits no former member once the id names a new federation: the object checks membership itself", async () => {
    await create("stale-1", { clients: ["c1"], clientsPerRound: 1, minClients: 1 });
    expect((await signed("/federations/stale-1/versions/0", "c1")).status).toBe(200);
    // Deleted and re-created behind this isolate's back (as through another isolate's DELETE: the object,
    // the registry entry, the versions kept in R2): its cache still lists c1.
    expect((await env.AGGREGATOR.getByName("stale-1").deleteFederation("stale-1")).ok).toBe(true);
    await env.AGGREGATOR.getByName("_registry").unregister("stale-1");
    await dropVersions(env, "stale-1");
    await create("stale-1", { clients: ["c9"], clientsPerRound: 1, minClients: 1 });
    for (const path of ["/federations/stale-1", "/federations/stale-1/versions/0", "/federations/stale-1/versions/0/adapter_config.json"]) {
      const res = await signed(path, "c1");
      expect([path, res.status, (await error(res)).code]).toEqual([path, 403, "client_unknown"]);
    }
    expect((await signed("/federations/stale-1/versions/0", "c9")).status).toBe(200);
  });
});
