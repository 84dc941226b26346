// What `wrangler deploy` ships, checked with its dry run: the coordinator (with the aggregator Durable
// Object) and the client template (with onnxruntime-web's .wasm); and the secret a data owner gets.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bundleWorker } from "../../cli/bundle-worker.ts";
import { deriveClientSecret } from "../../src/protocol/signature.ts";
import { runCli } from "./run-cli.ts";

describe("deploying", () => {
  it("bundles the coordinator and the client worker with wrangler deploy --dry-run", async () => {
    const [coordinator, client] = await Promise.all([bundleWorker("wrangler.toml"), bundleWorker("workers/client/wrangler.toml")]);
    expect(readFileSync(join(coordinator, "index.js"), "utf8")).toMatch(/Aggregator = class extends DurableObject/);
    expect(readFileSync(join(client, "index.js"), "utf8")).toMatch(/ClientTrainer = class extends DurableObject/);
    expect(readdirSync(client).some((f) => f.endsWith("ort-wasm-simd-threaded.wasm"))).toBe(true);
  }, 120_000);

  it("prints a client's secret derived from the master key", async () => {
    // The child inherits this process's environment.
    process.env.FEDFLARE_MASTER_KEY = "operator-key";
    const r = await runCli(["client-secret", "--client", "alice"]).finally(() => delete process.env.FEDFLARE_MASTER_KEY);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(await deriveClientSecret("operator-key", "alice"));
  });
});
