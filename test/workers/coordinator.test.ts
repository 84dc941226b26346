// The coordinator worker and its aggregator Durable Object, in workerd as wrangler.toml configures them.
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { describe, expect, it, vi } from "vitest";
import { MIGRATIONS, migrate, SCHEMA_VERSION } from "../../durable-objects/aggregator/schema.ts";
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
        "dropped_federations",
        "evaluation_requests",
        "evaluations",
        "federations",
        "nonces",
        "receipts",
        "registry",
        "round_clients",
        "round_shards",
        "rounds",
        "schema_version",
        "secagg",
      ]);
      // Migrating again is a no-op.
      expect(migrate(state.storage)).toBe(SCHEMA_VERSION);
      expect(state.storage.sql.exec("SELECT version FROM schema_version").toArray()).toEqual([{ version: SCHEMA_VERSION }]);
    });
  });

  it("moves a round's sample from its JSON column into rows when it migrates to v9", async () => {
    await runInDurableObject(env.AGGREGATOR.getByName("schema-v9"), (_instance, state) => {
      const sql = state.storage.sql;
      // A round as v8 wrote it, then v9's statement that moves the samples.
      sql.exec(
        "INSERT INTO rounds (federation_id, round, status, base_version, sampled, opened_at, deadline) " +
          "VALUES ('old', 3, 'closed', 2, '[\"a\",\"c9\",\"b\"]', 0, 0)",
      );
      sql.exec(MIGRATIONS[8]![1]!);
      expect(
        sql.exec("SELECT federation_id, round, client_id FROM round_clients WHERE federation_id = 'old' ORDER BY client_id").toArray(),
      ).toEqual(["a", "b", "c9"].map((client_id) => ({ federation_id: "old", round: 3, client_id })));
    });
  });
});
