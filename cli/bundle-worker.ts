// Bundles a worker as wrangler deploys it (esbuild, module rules for the ORT .wasm), for Miniflare.
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

export function bundleWorker(config: string): Promise<string> {
  const out = mkdtempSync(join(tmpdir(), "fedflare-bundle-"));
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "-c", config, "--outdir", out],
      { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
      (err, _stdout, stderr) => (err ? reject(new Error(`bundling ${config} failed: ${stderr}`)) : resolve(out)),
    ),
  );
}
