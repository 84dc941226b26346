// Bundles a worker as wrangler deploys it (esbuild, module rules for the ORT .wasm), for Miniflare. A bundle is
// kept and reused while the files esbuild read for it are unchanged: wrangler takes about 2 s of CPU a worker,
// and every local federation (`fedflare run`, the tests, the benches) starts two.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** How long a replaced bundle is kept since its last use: a run that started from it has read its files by then (modulesOf). */
const REPLACED_GRACE_MS = 10 * 60_000;

/** Where bundles are kept: FEDFLARE_CACHE_DIR, or node_modules/.cache/fedflare (the convention of find-cache-dir). */
export const defaultBundleCache = () => process.env.FEDFLARE_CACHE_DIR ?? join(ROOT, "node_modules", ".cache", "fedflare");

/** The bundle a config's entry was last built into, and what it was built from. */
interface Pointer {
  dir: string;
  inputs: string[];
  fingerprint: string;
}

/**
 * The folder holding `config`'s worker bundled (index.js and the .wasm modules). Reused while its inputs are
 * unchanged: the config, package-lock.json (wrangler's own version and the .wasm it copies, which esbuild's
 * metafile does not list), the tsconfig.json files esbuild reads, and every file the metafile lists. A build
 * during which an input changed is used once and not kept: it may hold the file as it was before.
 */
export async function bundleWorker(config: string, cache = join(defaultBundleCache(), "bundles")): Promise<string> {
  const file = resolve(ROOT, config);
  const key = `${basename(dirname(file))}-${createHash("sha256").update(file).digest("hex").slice(0, 16)}`;
  const pointerFile = join(cache, `${key}.json`);
  const pointer = readPointer(pointerFile);
  if (pointer && existsSync(join(cache, pointer.dir, "index.js")) && fingerprint(pointer.inputs) === pointer.fingerprint) {
    const dir = join(cache, pointer.dir);
    // Used now: pruneReplaced counts the grace period from here.
    const now = new Date();
    utimesSync(dir, now, now);
    return dir;
  }
  mkdirSync(cache, { recursive: true });
  const out = mkdtempSync(join(cache, `${key}-`));
  const metafile = `${out}.meta.json`;
  const started = Date.now();
  await wranglerBundle(file, out, metafile);
  const meta = JSON.parse(readFileSync(metafile, "utf8")) as { inputs: Record<string, unknown> };
  rmSync(metafile);
  const inputs = [
    file,
    join(ROOT, "package-lock.json"),
    ...tsconfigsAbove(dirname(file)),
    ...Object.keys(meta.inputs).map((p) => resolve(dirname(file), p)),
  ];
  if (inputs.some((path) => existsSync(path) && statSync(path).mtimeMs >= started)) return out;
  const next: Pointer = { dir: basename(out), inputs, fingerprint: fingerprint(inputs) };
  writeFileSync(`${out}.json`, JSON.stringify(next));
  renameSync(`${out}.json`, pointerFile);
  pruneReplaced(cache, key, next.dir);
  return out;
}

/** The tsconfig.json files esbuild may read for an entry in `dir`: in it and each folder above, up to the project's root. */
function tsconfigsAbove(dir: string): string[] {
  const found = [join(dir, "tsconfig.json")];
  for (let d = dir; d !== dirname(d) && resolve(d) !== resolve(ROOT); d = dirname(d)) found.push(join(dirname(d), "tsconfig.json"));
  return found;
}

function wranglerBundle(config: string, out: string, metafile: string): Promise<void> {
  return new Promise((done, fail) =>
    execFile(
      process.execPath,
      [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "-c", config, "--outdir", out, "--metafile", metafile],
      { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
      (err, _stdout, stderr) => (err ? fail(new Error(`bundling ${config} failed: ${stderr}`)) : done()),
    ),
  );
}

function readPointer(file: string): Pointer | undefined {
  try {
    const p = JSON.parse(readFileSync(file, "utf8")) as Partial<Pointer>;
    return typeof p.dir === "string" && Array.isArray(p.inputs) && typeof p.fingerprint === "string" ? (p as Pointer) : undefined;
  } catch {
    return undefined;
  }
}

/** A hash of each input's path and content; a missing input (a file deleted or moved since) hashes as absent. */
function fingerprint(inputs: readonly string[]): string {
  const h = createHash("sha256");
  for (const path of inputs) {
    h.update(`${path}\0`);
    h.update(existsSync(path) && statSync(path).isFile() ? createHash("sha256").update(readFileSync(path)).digest("hex") : "absent");
  }
  return h.digest("hex");
}

/** Removes this config's earlier bundles once they are older than the grace period. */
function pruneReplaced(cache: string, key: string, current: string): void {
  for (const name of readdirSync(cache)) {
    if (!name.startsWith(`${key}-`) || name === current || name.endsWith(".json")) continue;
    const path = join(cache, name);
    if (Date.now() - statSync(path).mtimeMs > REPLACED_GRACE_MS) rmSync(path, { recursive: true, force: true });
  }
}
