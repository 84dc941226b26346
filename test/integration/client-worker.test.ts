// A client worker at its boundary, in workerd: who may talk to it (the operator's signature or the
// owner's bearer token; nothing without CLIENT_SECRET), what it agrees to train (its FEDERATIONS, an open
// round that sampled it, its owner's limits), that no route hands out an upload, that its reads of the
// coordinator are signed, and that an upload meeting a 503, an expired signature and a dropped
// connection after the coordinator folded it lands exactly once. The coordinator is a LocalFederation's;
// the clients under test run in a second Miniflare and reach it through a Node proxy that records every
// request and injects the upload's faults.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleWorker } from "../../cli/bundle-worker.ts";
import { LocalFederation, modulesOf } from "../../cli/local-federation.ts";
import { toHfConfig } from "../../src/engine/config.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { alieTensors } from "../../src/fl/attacks/model-poisoning.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { deriveClientSecret, OPERATOR_ID, signRequest, verifyRequest } from "../../src/protocol/signature.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { malformedBearers } from "../fixtures/malformed-bearer.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { tokenizeExample } from "../../src/data/examples.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { loraPairs, loraScaling } from "../../src/engine/lora/peft.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { heldOutLoss, labelAccuracy } from "../../src/engine/train/evaluate.ts";

const MASTER = "client-worker-master";
const FED = "cw";
/** A federation deleted and created again under its id. */
const AGAIN = "cw-again";
const model = tinyConfig({ heads: 4, kvHeads: 2 });
const record = (i: number) => ({ prompt: `The ${["fox", "dog", "sun", "model"][i % 4]} trains.`, completion: ` It averages ${i}.` });
const owner = (id: string) => `owner-token-${id}`;

/** A request as the proxy saw it, and what it did with it. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  fault: Fault | null;
}
type Fault = "503" | "signature_expired" | "drop-after-forward";

let root: string;
let fed: LocalFederation;
let mf: Miniflare;
let proxy: Server;
const seen: Seen[] = [];
/** Faults the next uploads meet, in order. */
const faults: Fault[] = [];
/** Faults the next downloads of a version meet, in order. */
const versionFaults: "503"[] = [];

/** Forwards to the coordinator; an upload (PUT) takes the next fault, if any. */
function startProxy(): Promise<string> {
  proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const fault =
        req.method === "PUT" && req.url!.includes("/updates/")
          ? (faults.shift() ?? null)
          : req.url!.includes("/versions/")
            ? (versionFaults.shift() ?? null)
            : null;
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body, fault });
      if (fault === "503")
        return void res.writeHead(503, { "content-type": "application/json" }).end('{"error":{"code":"internal","message":"unavailable"}}');
      if (fault === "signature_expired")
        return void res
          .writeHead(401, { "content-type": "application/json" })
          .end('{"error":{"code":"signature_expired","message":"timestamp is more than 300 s from the server\'s clock"}}');
      const headers = Object.fromEntries(
        Object.entries(req.headers)
          .filter(([k]) => !["host", "connection", "content-length"].includes(k))
          .map(([k, v]) => [k, String(v)]),
      );
      void fetch(new URL(req.url!, fed.url), { method: req.method!, headers, ...(body.length ? { body: new Uint8Array(body) } : {}) })
        .then(async (answer) => {
          const bytes = Buffer.from(await answer.arrayBuffer());
          // The coordinator has the upload; the client never hears so.
          if (fault === "drop-after-forward") return void req.socket.destroy();
          // Written as a chunk, without a Content-Length: a client caps what it reads as it streams.
          res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/octet-stream" }).write(bytes);
          res.end();
        })
        .catch((e: unknown) => res.writeHead(502).end(String(e)));
    });
  });
  return new Promise((resolve) =>
    proxy.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(proxy.address() as { port: number }).port}`)),
  );
}

type Init = { method?: string; body?: string; headers?: Record<string, string> };
const call = async (id: string, path: string, init: Init = {}) =>
  (await (await mf.getWorker(`client-${id}`)).fetch(`http://client${path}`, init)) as unknown as Response;
const asOwner = (id: string, path: string, init: Init = {}) =>
  call(id, path, { ...init, headers: { authorization: `Bearer ${owner(id)}`, ...init.headers } });
/** Signed as the operator with `secretOf`'s secret (the client's own, unless a test says otherwise). */
async function asOperator(id: string, path: string, init: Init = {}, secretOf = id, signer = OPERATOR_ID): Promise<Response> {
  const body = init.body === undefined ? undefined : new TextEncoder().encode(init.body);
  return call(id, path, {
    ...init,
    headers: {
      ...(await signRequest(await deriveClientSecret(MASTER, secretOf), signer, init.method ?? "GET", path, body)),
      ...init.headers,
    },
  });
}
const task = (round: number, federationId = FED) => ({ method: "POST", body: JSON.stringify({ federationId, round }) });
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

async function jobOf(id: string, round: number, done: (j: { status: string }) => boolean, federationId = FED) {
  for (let i = 0; ; i++) {
    const job = (await (await asOwner(id, `/tasks/${federationId}/${round}`)).json()) as {
      status: string;
      detail: string | null;
      uploadBytes: number | null;
      uploadSha256: string | null;
    };
    if (done(job)) return job;
    if (i > 600) throw new Error(`client ${id}'s job is still ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-client-worker-"));
  fed = await LocalFederation.start({ stateDir: join(root, "coordinator"), masterKey: MASTER, clients: [], modelFiles: new Map() });
  const coordinatorUrl = await startProxy();
  const dir = await bundleWorker("workers/client/wrangler.toml");
  const client = async (id: string, vars: Record<string, string>, secret = true) => ({
    name: `client-${id}`,
    ...modulesOf(dir),
    compatibilityDate: "2026-11-01",
    durableObjects: { TRAINER: { className: "ClientTrainer", useSQLite: true } },
    r2Buckets: { MODEL: "models", DATA: `data-${id}` },
    bindings: {
      CLIENT_ID: id,
      ...(secret ? { CLIENT_SECRET: await deriveClientSecret(MASTER, id) } : {}),
      CLIENT_OWNER_TOKEN: owner(id),
      COORDINATOR_URL: coordinatorUrl,
      MODEL_PREFIX: "model/",
      STEPS_PER_INVOCATION: "8",
      FEDERATIONS: FED,
      ...vars,
    },
  });
  mf = new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        await client("a", {}),
        await client("b", { MAX_LOCAL_STEPS: "2" }),
        await client("c", { MAX_DOWNLOAD_BYTES: "100" }),
        await client("nosecret", {}, false),
        // A benchmark's attacker: Gaussian noise of std 1000 in place of its update, claiming a billion examples.
        await client("d", { ATTACK: JSON.stringify({ type: "gaussian", std: 1000, examples: 1e9 }) }),
        // A client that trains one step per slice, so it reports its progress between slices.
        await client("g", { STEPS_PER_INVOCATION: "1" }),
        // A client of a federation that is deleted and created again under its id.
        await client("h", { FEDERATIONS: AGAIN }),
        // Two colluders of "a little is enough", pooling their honest updates in e's Collusion object.
        ...(await Promise.all(
          ["e", "f"].map(async (id) => ({
            ...(await client(id, { ATTACK: JSON.stringify({ type: "alie", colluders: 2, z: 1.5 }) })),
            durableObjects: {
              TRAINER: { className: "ClientTrainer", useSQLite: true },
              COLLUSION: { className: "Collusion", scriptName: "client-e", useSQLite: true },
            },
          })),
        )),
      ],
    }),
  );
  await mf.ready;
  const weights = tinyWeights(model, 3);
  const models = await mf.getR2Bucket("MODEL", "client-a");
  for (const [name, content] of hfModelFiles(model, weights, tinyTokenizerJson(model.vocabSize), {
    tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" },
  }))
    await models.put(`model/${name}`, content);
  for (const id of ["a", "b", "c", "d", "e", "f", "g", "h"])
    await (await mf.getR2Bucket("DATA", `client-${id}`)).put(
      "partition.jsonl",
      Array.from({ length: 8 }, (_, i) => JSON.stringify(record(i))).join("\n"),
    );

  // Every client sampled each round; the first upload closes it.
  const config = federationConfig(FED, {
    model: { name: "tiny", config: toHfConfig(model), quant: "f32" },
    clients: ["a", "b", "c", "d", "e", "f", "g"],
    clientsPerRound: 7,
    minClients: 1,
    quorum: 1,
    rounds: 5,
    local: { steps: 3, batchSize: 4, lr: 1e-2, maxTokens: 32 },
  });
  expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
  expect((await fed.coordinator(`/federations/${FED}/rounds`, { method: "POST" })).status).toBe(201);
}, 120_000);

afterAll(async () => {
  await mf?.dispose();
  await fed?.dispose();
  await new Promise((r) => proxy?.close(r));
  rmSync(root, { recursive: true, force: true });
});

describe("a client worker's boundary", () => {
  it("answers /health openly, naming nothing of the deployment", async () => {
    const res = await call("a", "/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, service: "fedflare-client" });
  });

  it("without CLIENT_SECRET answers 503 naming the secret, whoever asks", async () => {
    for (const res of [await call("nosecret", "/tasks", task(1)), await asOwner("nosecret", "/tasks", task(1))]) {
      expect(res.status).toBe(503);
      expect((await errorOf(res)).message).toMatch(/CLIENT_SECRET/);
    }
  });

  it("refuses requests without the operator's signature or the owner's token, and creates no job", async () => {
    const unauthenticated = await call("a", "/tasks", task(1));
    expect(unauthenticated.status).toBe(401);
    expect((await errorOf(unauthenticated)).code).toBe("signature_missing");
    const wrongToken = await call("a", "/tasks", { ...task(1), headers: { authorization: `Bearer ${owner("b")}` } });
    expect(wrongToken.status).toBe(401);
    // The operator's signature made with another client's secret, and this client's own signature (not the operator's).
    const otherSecret = await asOperator("a", "/tasks", task(1), "b");
    expect(otherSecret.status).toBe(401);
    expect((await errorOf(otherSecret)).code).toBe("signature_invalid");
    const notOperator = await asOperator("a", "/tasks", task(1), "a", "a");
    expect(notOperator.status).toBe(401);
    // A valid signature over another body does not carry this one.
    const headers = await signRequest(
      await deriveClientSecret(MASTER, "a"),
      OPERATOR_ID,
      "POST",
      "/tasks",
      new TextEncoder().encode(JSON.stringify({ federationId: FED, round: 2 })),
    );
    expect((await call("a", "/tasks", { ...task(1), headers: { ...headers } })).status).toBe(401);
    expect((await call("a", `/tasks/${FED}/1`)).status).toBe(401);
    expect((await asOwner("a", `/tasks/${FED}/1`)).status).toBe(404);
    expect(seen).toEqual([]);
  });

  it("refuses a malformed Authorization header with 401, even around the owner's token, and creates no job", async () => {
    const before = seen.length;
    for (const authorization of malformedBearers(owner("a"))) {
      const res = await call("a", "/tasks", { ...task(1), headers: { authorization } });
      expect([authorization, res.status, (await errorOf(res)).message]).toEqual([
        authorization,
        401,
        expect.stringMatching(/must be `Bearer <token>`/),
      ]);
    }
    expect((await asOwner("a", `/tasks/${FED}/1`)).status).toBe(404);
    expect(seen.length).toBe(before);
  });

  it("refuses a body over its cap before reading it", async () => {
    const res = await asOwner("a", "/tasks", {
      method: "POST",
      body: JSON.stringify({ federationId: FED, round: 1, pad: "x".repeat(5000) }),
    });
    // Miniflare's getWorker().fetch sends a body chunked, without Content-Length: refused as it streams past the cap.
    expect([res.status, await errorOf(res)]).toEqual([413, { code: "payload_too_large", message: "the body exceeds 4096 bytes" }]);
  });

  it("takes tasks only for the federations in FEDERATIONS, without asking the coordinator about others", async () => {
    const res = await asOperator("a", "/tasks", task(1, "elsewhere"));
    expect(res.status).toBe(403);
    expect((await errorOf(res)).message).toMatch(/FEDERATIONS/);
    // Nor is a job of another federation, or of a round that is no number, looked up.
    expect((await asOwner("a", "/tasks/elsewhere/1")).status).toBe(403);
    for (const round of ["NaN", "1.5", "-3", "0"]) {
      const bad = await asOwner("a", `/tasks/${FED}/${round}`);
      expect([round, bad.status, (await errorOf(bad)).message]).toEqual([round, 400, `a round is a positive integer, got "${round}"`]);
    }
    expect(seen).toEqual([]);
  });

  it("refuses a task over an owner limit, naming it: at POST /tasks when it can tell, else in the job", async () => {
    const steps = await asOperator("b", "/tasks", task(1));
    expect(steps.status).toBe(422);
    expect((await errorOf(steps)).message).toMatch(/asks 3 \(local steps\), over this client's MAX_LOCAL_STEPS of 2/);
    expect((await asOwner("b", `/tasks/${FED}/1`)).status).toBe(404);
    // The version's size is known only when it is fetched: the job fails, naming the limit.
    expect((await asOperator("c", "/tasks", task(1))).status).toBe(202);
    const job = await jobOf("c", 1, (j) => j.status !== "queued");
    expect(job.status).toBe("failed");
    expect(job.detail).toMatch(/MAX_DOWNLOAD_BYTES \(100\)/);
  });

  it("has no route that hands out an upload", async () => {
    const res = await asOwner("a", `/tasks/${FED}/1/delta`);
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("not_found");
  });

  it(`retries an upload after a 503, an expired signature and a connection lost after the fold, with the same key and body, signed anew; \
it lands once`, async () => {
    faults.push("503", "signature_expired", "drop-after-forward");
    const accepted = await asOwner("a", "/tasks", task(1));
    expect(accepted.status, await accepted.clone().text()).toBe(202);
    const job = await jobOf("a", 1, (j) => j.status === "uploaded" || j.status === "failed");
    expect(job.status, job.detail ?? "").toBe("uploaded");
    const puts = seen.filter((s) => s.method === "PUT" && s.url.includes("/updates/"));
    expect(puts.map((p) => p.fault)).toEqual(["503", "signature_expired", "drop-after-forward", null]);
    expect(new Set(puts.map((p) => p.headers["idempotency-key"]))).toEqual(new Set([`${FED}/1/a`]));
    const sha = createHash("sha256").update(puts[0]!.body).digest("hex");
    expect(puts.every((p) => createHash("sha256").update(p.body).digest("hex") === sha)).toBe(true);
    // Each attempt signed anew: four nonces, each signature good for its request.
    expect(new Set(puts.map((p) => p.headers["x-fedflare-nonce"])).size).toBe(4);
    for (const p of puts)
      expect(
        (await verifyRequest(MASTER, new Headers(p.headers as Record<string, string>), "PUT", p.url, new Uint8Array(p.body))).clientId,
      ).toBe("a");
    // The last answer is the coordinator's replay of the fold the dropped attempt made.
    expect(job.detail).toMatch(/"replayed":\s*true/);
    expect(job).toMatchObject({ uploadBytes: puts[0]!.body.length, uploadSha256: sha });
    const round = (await (await fed.coordinator(`/federations/${FED}/rounds/1`)).json()) as {
      status: string;
      uploads: number;
      receipts: { clientId: string }[];
    };
    expect(round).toMatchObject({ status: "closed", uploads: 1 });
    expect(round.receipts.map((r) => r.clientId)).toEqual(["a"]);
  }, 120_000);

  it("refuses a task for a round that is no longer open", async () => {
    const res = await asOperator("c", "/tasks", task(1));
    expect(res.status).toBe(409);
    expect((await errorOf(res)).message).toMatch(/round 1 of "cw" is closed/);
  });

  it("signs every read of the coordinator as itself, over the path and query the coordinator sees", async () => {
    const gets = seen.filter((s) => s.method === "GET");
    expect(gets.map((g) => g.url)).toEqual(expect.arrayContaining([`/federations/${FED}/rounds/1`, `/federations/${FED}/versions/0`]));
    for (const g of gets) {
      const verified = await verifyRequest(MASTER, new Headers(g.headers as Record<string, string>), "GET", g.url, new Uint8Array());
      expect(["a", "b", "c"]).toContain(verified.clientId);
    }
  });

  it("a pulled task over an owner limit fails its job, naming the limit", async () => {
    expect((await fed.coordinator(`/federations/${FED}/rounds`, { method: "POST" })).status).toBe(201);
    await (await mf.getWorker("client-b")).scheduled({ cron: "* * * * *" });
    const job = await jobOf("b", 2, (j) => j.status !== "queued");
    expect(job.status).toBe("failed");
    expect(job.detail).toMatch(/MAX_LOCAL_STEPS of 2/);
    const pulled = seen.filter((s) => s.method === "GET" && s.headers["x-fedflare-client"] === "b").map((s) => s.url);
    expect(pulled).toEqual(expect.arrayContaining([`/federations/${FED}`, `/federations/${FED}/rounds/2`]));
  });

  it("retries a slice whose download met a busy coordinator (503, 503), with backoff, then trains and uploads", async () => {
    versionFaults.push("503", "503");
    const before = seen.length;
    expect((await asOwner("a", "/tasks", task(2))).status).toBe(202);
    const job = await jobOf("a", 2, (j) => j.status === "uploaded" || j.status === "failed");
    expect(job.status, job.detail ?? "").toBe("uploaded");
    const downloads = seen.slice(before).filter((s) => s.method === "GET" && s.url.includes("/versions/"));
    expect(downloads.map((d) => d.fault)).toEqual(["503", "503", null]);
  }, 120_000);

  it("with an ATTACK binding uploads the attack's update and claim, which the coordinator refuses past its example cap", async () => {
    expect((await fed.coordinator(`/federations/${FED}/rounds`, { method: "POST" })).status).toBe(201);
    expect((await asOwner("d", "/tasks", task(3))).status).toBe(202);
    const job = await jobOf("d", 3, (j) => j.status === "uploaded" || j.status === "failed");
    expect([job.status, job.detail]).toEqual(["failed", expect.stringMatching(/upload refused: .*num_examples/)]);
    const put = seen.find((s) => s.method === "PUT" && s.url.includes("/updates/") && s.headers["x-fedflare-client"] === "d")!;
    const file = decodeTensorFile(new Uint8Array(put.body), "d's upload");
    expect(file.metadata.num_examples).toBe("1000000000");
    const values = [...file.tensors.values()].flatMap((t) => Array.from(t));
    const std = Math.sqrt(values.reduce((s, x) => s + x * x, 0) / values.length);
    expect(std).toBeGreaterThan(900);
    expect(std).toBeLessThan(1100);
  }, 120_000);

  it("colluders wait for each other's honest updates, then each uploads μ − zσ of them", async () => {
    // Round 3 took no upload (d's was refused): the operator ends it.
    const ended = await fed.coordinator(`/federations/${FED}/rounds/3/fail`, {
      method: "POST",
      body: JSON.stringify({ reason: "no upload" }),
    });
    expect(ended.status, await ended.clone().text()).toBe(200);
    expect((await fed.coordinator(`/federations/${FED}/rounds`, { method: "POST" })).status).toBe(201);
    for (const id of ["e", "f"]) expect((await asOwner(id, "/tasks", task(4))).status).toBe(202);
    // The first upload closes the round (quorum 1); the other colluder's is refused, as the round closed.
    const jobs = await Promise.all(["e", "f"].map((id) => jobOf(id, 4, (j) => j.status === "uploaded" || j.status === "failed")));
    expect(jobs.map((j) => j.status).sort()).toEqual(["failed", "uploaded"]);
    const ns = await mf.getDurableObjectNamespace("COLLUSION", "client-e");
    // Offering again as a colluder that already did stores nothing and returns the pool.
    const pooled = (await (
      ns.get(ns.idFromName(`${FED}/4`)) as unknown as { offer(c: string, b: Uint8Array, n: number): Promise<Uint8Array[]> }
    ).offer("e", new Uint8Array(), 2))!;
    expect(pooled).toHaveLength(2);
    const want = alieTensors(
      pooled.map((b) => decodeTensorFile(b, "pooled").tensors),
      1.5,
    );
    const puts = seen.filter(
      (s) => s.method === "PUT" && s.url.includes("/updates/") && ["e", "f"].includes(String(s.headers["x-fedflare-client"])),
    );
    expect(puts).toHaveLength(2);
    for (const p of puts) expect(decodeTensorFile(new Uint8Array(p.body), "colluder").tensors).toEqual(want);
    expect(pooled[0]).not.toEqual(pooled[1]);
  }, 120_000);

  it("reports its progress between slices, signed, to the round's progress route", async () => {
    expect((await fed.coordinator(`/federations/${FED}/rounds`, { method: "POST" })).status).toBe(201);
    expect((await asOwner("g", "/tasks", task(5))).status).toBe(202);
    const job = await jobOf("g", 5, (j) => j.status === "uploaded" || j.status === "failed");
    expect(job.status, job.detail ?? "").toBe("uploaded");
    const beats = seen.filter((s) => s.method === "PUT" && s.url === `/federations/${FED}/rounds/5/progress/g`);
    // One step a slice, three steps, a heartbeat at most every 5 s: the first slice's.
    expect(beats.map((b) => JSON.parse(b.body.toString()))).toEqual([{ stepsDone: 1, steps: 3 }]);
    expect(
      (
        await verifyRequest(
          MASTER,
          new Headers(beats[0]!.headers as Record<string, string>),
          "PUT",
          beats[0]!.url,
          new Uint8Array(beats[0]!.body),
        )
      ).clientId,
    ).toBe("g");
  }, 120_000);

  it("scores a version asked of it on its held-out split, on its cron or asked, and reports its loss and accuracy, signed", async () => {
    const heldOut = Array.from({ length: 5 }, (_, i) => record(i + 20));
    await (await mf.getR2Bucket("DATA", "client-a")).put("heldout.jsonl", heldOut.map((r) => JSON.stringify(r)).join("\n"));
    const { version } = (await (await fed.coordinator(`/federations/${FED}`)).json()) as { version: number };
    expect((await fed.coordinator(`/federations/${FED}/versions/${version}/evaluate`, { method: "POST" })).status).toBe(201);
    await (await mf.getWorker("client-a")).scheduled({ cron: "* * * * *" });
    type View = {
      reports: number;
      metrics: { loss: number };
      clients: { clientId: string; numExamples: number; metrics: { loss: number; accuracy?: number } }[];
    };
    const read = async () => (await (await fed.coordinator(`/federations/${FED}/versions/${version}/evaluation`)).json()) as View;
    let view = await read();
    for (let i = 0; i < 300 && !view.reports; i++) {
      await new Promise((r) => setTimeout(r, 200));
      view = await read();
    }
    expect(view.clients.map((c) => [c.clientId, c.numExamples])).toEqual([["a", 5]]);
    // The same loss computed here: the base model with the version's adapter on the same tokenized examples.
    const adapter = decodeTensorFile(
      new Uint8Array(await (await fed.coordinator(`/federations/${FED}/versions/${version}`)).arrayBuffer()),
      "v",
    );
    const tok = loadTokenizer(tinyTokenizerJson(model.vocabSize));
    const eos = model.eosTokenIds[0] ?? 0;
    const forward = await ForwardModel.create(ortNodeRuntime(), model, tinyWeights(model, 3), {
      kind: "forward",
      quant: "f32",
      nll: true,
      lora: loraPairs(adapter.tensors, 4, loraScaling({ r: 4, alpha: 8, useRslora: false })),
    });
    const { loss } = await heldOutLoss(
      forward,
      heldOut.map((e) => tokenizeExample(e, tok, eos, 32)),
    );
    await forward.release();
    expect(view.clients[0]!.metrics.loss).toBeCloseTo(loss, 5);
    const report = seen.find((s) => s.method === "PUT" && s.url === `/federations/${FED}/versions/${version}/evaluations/a`)!;
    expect(JSON.parse(report.body.toString())).toEqual({ numExamples: 5, metrics: { loss: view.clients[0]!.metrics.loss } });

    // A held-out split whose completions are two labels, each several times: the accuracy of the likelier label too.
    const labeled = Array.from({ length: 6 }, (_, i) => ({
      prompt: `The ${["fox", "dog", "sun"][i % 3]} is`,
      completion: i % 2 ? " big" : " small",
    }));
    await (await mf.getR2Bucket("DATA", "client-b")).put("heldout.jsonl", labeled.map((r) => JSON.stringify(r)).join("\n"));
    const answered = await asOwner("b", "/evaluations", { method: "POST", body: JSON.stringify({ federationId: FED }) });
    expect(await answered.json()).toEqual({ reported: [version] });
    const fromB = (await read()).clients.find((c) => c.clientId === "b")!;
    const forward2 = await ForwardModel.create(ortNodeRuntime(), model, tinyWeights(model, 3), {
      kind: "forward",
      quant: "f32",
      nll: true,
      lora: loraPairs(adapter.tensors, 4, loraScaling({ r: 4, alpha: 8, useRslora: false })),
    });
    const items = labeled.map((e) => ({ prompt: e.prompt, label: e.completion }));
    const want = await labelAccuracy(forward2, tok, items, [" big", " small"], { maxTokens: 32 });
    const wantLoss = await heldOutLoss(
      forward2,
      labeled.map((e) => tokenizeExample(e, tok, eos, 32)),
    );
    await forward2.release();
    expect(fromB.numExamples).toBe(6);
    expect(fromB.metrics.accuracy).toBe(want.accuracy);
    expect(fromB.metrics.loss).toBeCloseTo(wantLoss.loss, 5);
    // The folded view: the example-weighted mean of the two clients' losses.
    expect(((await read()) as unknown as { metrics: { loss: number } }).metrics.loss).toBeCloseTo(
      (5 * view.clients[0]!.metrics.loss + 6 * fromB.metrics.loss) / 11,
      9,
    );
  }, 120_000);

  it("trains a re-created federation's round afresh, not the deleted federation's job of the same number", async () => {
    const create = async (seed: number) => {
      const config = federationConfig(AGAIN, {
        model: { name: "tiny", config: toHfConfig(model), quant: "f32" },
        clients: ["h"],
        clientsPerRound: 1,
        minClients: 1,
        rounds: 2,
        seed,
        local: { steps: 2, batchSize: 4, lr: 1e-2, maxTokens: 32 },
      });
      expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
      expect((await fed.coordinator(`/federations/${AGAIN}/rounds`, { method: "POST" })).status).toBe(201);
    };
    const trained = async () => {
      expect((await asOwner("h", "/tasks", task(1, AGAIN))).status).toBe(202);
      const job = await jobOf("h", 1, (j) => j.status === "uploaded" || j.status === "failed", AGAIN);
      expect(job.status, job.detail ?? "").toBe("uploaded");
      const round = (await (await fed.coordinator(`/federations/${AGAIN}/rounds/1`)).json()) as { status: string; uploads: number };
      expect(round).toMatchObject({ status: "closed", uploads: 1 });
      return job.uploadSha256;
    };
    await create(1);
    const first = await trained();
    expect((await fed.coordinator(`/federations/${AGAIN}`, { method: "DELETE" })).status).toBe(200);
    // The same id, another seed (another LoRA initialisation): round 1 is a new round, and the job trains it.
    await create(2);
    const second = await trained();
    expect(second).not.toBe(first);
  }, 120_000);
});
