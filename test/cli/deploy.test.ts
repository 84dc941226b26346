// What `wrangler deploy` ships, checked with its dry run: the coordinator (with the aggregator Durable
// Object) and the client template (with onnxruntime-web's .wasm); and the secret a data owner gets.
import { existsSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bundleWorker } from "../../cli/bundle-worker.ts";
import { modulesOf } from "../../cli/local-federation.ts";
import { tempDir } from "../fixtures/hf-model.ts";
import { deriveClientSecret } from "../../src/protocol/signature.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("bundle-cache");
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("deploying", () => {
  it("bundles the coordinator and the client worker with wrangler deploy --dry-run", async () => {
    const [coordinator, client] = await Promise.all([bundleWorker("wrangler.toml"), bundleWorker("workers/client/wrangler.toml")]);
    expect(readFileSync(join(coordinator, "index.js"), "utf8")).toMatch(/Aggregator = class extends DurableObject/);
    expect(readFileSync(join(client, "index.js"), "utf8")).toMatch(/ClientTrainer = class extends DurableObject/);
    expect(readdirSync(client).some((f) => f.endsWith("ort-wasm-simd-threaded.wasm"))).toBe(true);
  }, 120_000);

  it("keeps a bundle while the files it was built from are unchanged, and builds anew when one changes", async () => {
    const cache = join(root, "cache");
    const config = join(root, "wrangler.toml");
    writeFileSync(config, 'name = "probe"\nmain = "index.ts"\ncompatibility_date = "2026-11-01"\n');
    writeFileSync(join(root, "index.ts"), 'import { word } from "./word.ts";\nexport default { fetch: () => new Response(word) };\n');
    const say = (word: string) => writeFileSync(join(root, "word.ts"), `export const word = "${word}";\n`);
    const built = (dir: string) => readFileSync(join(dir, "index.js"), "utf8");
    say("first-word");
    const first = await bundleWorker(config, cache);
    expect(built(first)).toContain("first-word");
    // Unchanged inputs: the same folder, not a new build into another.
    expect(await bundleWorker(config, cache)).toBe(first);
    const modules = modulesOf(first).modules;
    // An imported file changed: built anew; the replaced bundle stays for runs that started from it.
    say("second-word");
    const second = await bundleWorker(config, cache);
    expect(second).not.toBe(first);
    expect(built(second)).toContain("second-word");
    expect(existsSync(first)).toBe(true);
    // Past the grace period a replaced bundle is removed, and what Miniflare was handed does not depend on it.
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(first, hourAgo, hourAgo);
    say("third-word");
    const third = await bundleWorker(config, cache);
    expect(built(third)).toContain("third-word");
    expect(existsSync(first)).toBe(false);
    expect(existsSync(second)).toBe(true);
    expect(new TextDecoder().decode(modules[0]!.contents)).toContain("first-word");
    // A file saved while a build runs: that build is used once but not kept, since it may hold the file as it was.
    say("fourth-word");
    const during = bundleWorker(config, cache);
    say("fifth-word");
    const raced = await during;
    expect(raced).not.toBe(third);
    const after = await bundleWorker(config, cache);
    expect(after).not.toBe(raced);
    expect(built(after)).toContain("fifth-word");
    expect(await bundleWorker(config, cache)).toBe(after);
  }, 120_000);

  it("prints a client's secret derived from the master key", async () => {
    // The child inherits this process's environment.
    process.env.FEDFLARE_MASTER_KEY = "operator-key";
    const r = await runCli(["client-secret", "--client", "alice"]).finally(() => delete process.env.FEDFLARE_MASTER_KEY);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(await deriveClientSecret("operator-key", "alice"));
  });
});
