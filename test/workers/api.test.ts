// The coordinator's HTTP API in workerd, as a user and a client call it.
import { describe, expect, it } from "vitest";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import app from "../../workers/coordinator/index.ts";
import { anonymous, api, signedPut } from "./coordinator-api.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { PUBLISHED_CONFIGS } from "../../bench/lib/published-configs.ts";

const config = (id: string) =>
  federationConfig(id, {
    method: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] },
    rounds: 2,
    clients: ["alice", "bob"],
    clientsPerRound: 2,
    minClients: 1,
  });

describe("coordinator API", () => {
  it("runs a round over HTTP: create, open, signed uploads, the new version as a PEFT folder", async () => {
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config("http-1")) })).status).toBe(201);
    expect(await (await api("/federations/http-1")).json()).toMatchObject({ id: "http-1", version: 0 });
    const round = await api("/federations/http-1/rounds", { method: "POST" });
    expect(round.status).toBe(201);
    expect(await round.json()).toMatchObject({ round: 1, sampled: ["alice", "bob"] });
    const v0 = await api("/federations/http-1/versions/0");
    expect(v0.headers.get("content-type")).toBe("application/octet-stream");
    const global = decodeTensorFile(new Uint8Array(await v0.arrayBuffer()), "v0");
    const delta = new Map([...global.tensors].map(([k, t]) => [k, t.map(() => 0.5)]));
    const body = encodeTensorFile(delta, global.shapes, { format: "pt", num_examples: "4" });
    const path = "/federations/http-1/rounds/1/updates/alice";
    const ok = await signedPut(path, body, "alice");
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ replayed: false, roundStatus: "open" });
    expect((await signedPut("/federations/http-1/rounds/1/updates/bob", body, "bob")).status).toBe(200);
    const v1 = decodeTensorFile(
      new Uint8Array(await (await api("/federations/http-1/versions/1/adapter_model.safetensors")).arrayBuffer()),
      "v1",
    );
    for (const [k, t] of global.tensors) v1.tensors.get(k)!.forEach((x, i) => expect(x).toBeCloseTo(t[i]! + 0.5, 6));
    expect(await (await api("/federations/http-1/versions/1/adapter_config.json")).json()).toMatchObject({
      peft_type: "LORA",
      r: 2,
      lora_alpha: 4,
      target_modules: ["q_proj"],
    });
    expect(await (await api("/federations/http-1/metrics")).json()).toMatchObject([
      { round: 1, status: "closed", uploads: 2, totalWeight: 8, result: { version: 1 } },
    ]);
    expect(await (await api("/federations/http-1")).json()).toMatchObject({ version: 1, roundsDone: 1, openRound: null });
  });

  it.each([
    ["malformed JSON", () => api("/federations", { method: "POST", body: "{" }), 400, "bad_request", /not valid JSON/],
    ["a config without an id", () => api("/federations", { method: "POST", body: "{}" }), 400, "bad_request", /"id"/],
    [
      "an invalid config",
      () => api("/federations", { method: "POST", body: JSON.stringify({ ...config("bad"), rounds: 0 }) }),
      422,
      "config_invalid",
      /rounds/,
    ],
    [
      "a federation whose clients could not fit a Worker (Qwen2.5-0.5B's head alone is 136 MB as int8)",
      () =>
        api("/federations", {
          method: "POST",
          body: JSON.stringify({
            ...config("too-big"),
            model: { name: "qwen", config: PUBLISHED_CONFIGS["Qwen/Qwen2.5-0.5B"], quant: "int8" },
            method: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"], fromLayer: 23 },
          }),
        }),
      422,
      "config_invalid",
      /no client can run this federation inside its 128 MiB \(clientMemoryMiB; local: 24 layers.*endpoint: 1 layers/,
    ],
    [
      "an oversized JSON body",
      () => api("/federations", { method: "POST", body: "x".repeat((1 << 20) + 1) }),
      413,
      "payload_too_large",
      /at most|exceeds/,
    ],
    ["an unknown federation", () => api("/federations/nope"), 404, "federation_not_found", /nope/],
    ["a round number that is not a number", () => api("/federations/http-1/rounds/one"), 400, "bad_request", /round must be/],
    [
      "an upload without signature headers",
      () => anonymous("/federations/http-1/rounds/1/updates/alice", { method: "PUT", headers: { "idempotency-key": "k" }, body: "x" }),
      401,
      "signature_missing",
      /signed requests/,
    ],
    [
      "an upload signed with another client's secret",
      () => signedPut("/federations/http-1/rounds/1/updates/alice", new Uint8Array(8), "alice", { secretOf: "bob" }),
      401,
      "signature_invalid",
      /does not match/,
    ],
    [
      "an upload signed by one client for another",
      () => signedPut("/federations/http-1/rounds/1/updates/alice", new Uint8Array(8), "bob"),
      403,
      "forbidden",
      /signed by "bob"/,
    ],
    [
      "an upload without an Idempotency-Key",
      () => signedPut("/federations/http-1/rounds/1/updates/alice", new Uint8Array(8), "alice", { key: "" }),
      400,
      "bad_request",
      /Idempotency-Key/,
    ],
  ])("refuses %s", async (_, call, status, code, message) => {
    const before = await (await api("/federations/http-1/rounds/1")).text();
    const res = await call();
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error: { code, message: expect.stringMatching(message) } });
    expect(await (await api("/federations/http-1/rounds/1")).text()).toBe(before);
  });

  it("serves an OpenAPI document generated from the validation schemas", async () => {
    const doc = (await (await api("/openapi.json")).json()) as {
      openapi: string;
      components: { schemas: Record<string, { properties: Record<string, unknown> }> };
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.components.schemas.FederationConfig!.properties)).toEqual(
      expect.arrayContaining(["id", "model", "method", "strategy", "rounds", "clients", "deadlineSeconds"]),
    );
    expect(doc.components.schemas.UploadMetadata!.properties).toHaveProperty("num_examples");
  });

  it(`documents every route with the credential it needs; only the health check, \
the document and the dashboard's shell are open`, async () => {
    const doc = (await (await api("/openapi.json")).json()) as { paths: Record<string, Record<string, { security?: object[] }>> };
    const open = new Set(["GET /", "GET /health", "GET /openapi.json"]);
    const routes = new Set(app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`));
    for (const route of routes) {
      if (open.has(route)) continue;
      const [method, path] = route.split(" ") as [string, string];
      expect([route, (doc.paths[path]?.[method.toLowerCase()]?.security ?? []).length > 0]).toEqual([route, true]);
    }
    for (const route of open) {
      const [method, path] = route.split(" ") as [string, string];
      expect((await anonymous(path, { method })).status).toBe(200);
    }
  });
});
