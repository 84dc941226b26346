// The coordinator worker and its aggregator Durable Object, in workerd as wrangler.toml configures them.
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { describe, expect, it, vi } from "vitest";
import { migrate, SCHEMA_VERSION } from "../../durable-objects/aggregator/schema.ts";
import { onError } from "../../workers/lib/http-errors.ts";

describe("coordinator worker", () => {
  it("answers /health", async () => {
    const res = await exports.default.fetch("http://coordinator/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, service: "fedflare-coordinator" });
  });

  it("answers unknown routes with a JSON 404", async () => {
    const res = await exports.default.fetch("http://coordinator/nowhere", { method: "POST" });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: "not_found", message: "no route POST /nowhere" } });
  });

  it("answers HTTP exceptions with their status and other errors with a JSON 500 that hides the message", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const app = new Hono()
      .get("/upload", () => {
        throw new HTTPException(413, { message: "too big" });
      })
      .get("/bug", () => {
        throw new Error("secret detail");
      })
      .onError(onError);
    const big = await app.request("/upload");
    expect(big.status).toBe(413);
    expect(await big.json()).toEqual({ error: { code: "payload_too_large", message: "too big" } });
    const bug = await app.request("/bug");
    expect(bug.status).toBe(500);
    expect(await bug.json()).toEqual({ error: { code: "internal", message: "internal error" } });
    expect(logged).toHaveBeenCalledOnce();
    logged.mockRestore();
  });
});

describe("aggregator Durable Object", () => {
  it("migrates its storage on construction and reports the schema version", async () => {
    const stub = env.AGGREGATOR.getByName("schema-test");
    expect(await stub.schema()).toBe(SCHEMA_VERSION);
    await runInDurableObject(stub, (_instance, state) => {
      const tables = state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .toArray();
      expect(tables.map((t) => t.name)).toEqual([
        "blobs",
        "evaluation_requests",
        "evaluations",
        "federations",
        "nonces",
        "receipts",
        "registry",
        "rounds",
        "schema_version",
        "secagg",
      ]);
      // Migrating again is a no-op.
      expect(migrate(state.storage)).toBe(SCHEMA_VERSION);
      expect(state.storage.sql.exec("SELECT version FROM schema_version").toArray()).toEqual([{ version: SCHEMA_VERSION }]);
    });
  });
});
