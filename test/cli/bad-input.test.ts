// What a user's bad input gets from the CLI: a message naming the file or the folder and a non-zero exit,
// never a stack trace, and a run folder never mixed with another config's run.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseRunConfig } from "../../cli/run-config.ts";
import { RunFolder } from "../../cli/run/run-folder.ts";
import { UsageError } from "../../cli/usage.ts";
import { runCli } from "./run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "fedflare-bad-input-"));
const noStack = (stderr: string) => expect(stderr).not.toMatch(/\n\s+at /);

describe("bad input at the command line", () => {
  it("names a missing file or a file that is not JSON, without a stack trace", async () => {
    const missing = await runCli(["run", "--config", join(dir, "nope.json")]);
    expect([missing.code, missing.stderr]).toEqual([
      1,
      `fedflare run: ENOENT: no such file or directory, open '${join(dir, "nope.json")}'\n`,
    ]);
    writeFileSync(join(dir, "bad.json"), '{"records": 30,');
    const bad = await runCli(["run", "--config", join(dir, "bad.json")]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(new RegExp(`^fedflare run: ${join(dir, "bad.json")} is not valid JSON: `));
    noStack(bad.stderr);
    const data = await runCli(["perplexity", "--model", "models/fedflare-sotu-4m", "--data", join(dir, "nope.jsonl")]);
    expect([data.code, data.stderr]).toEqual([
      1,
      `fedflare perplexity: ENOENT: no such file or directory, open '${join(dir, "nope.jsonl")}'\n`,
    ]);
  });

  it("refuses numbers out of range before the work starts: threads past the cores, tokens past the context", async () => {
    const threads = await runCli(["perplexity", "--model", "models/fedflare-sotu-4m", "--corpus", "sotu-heldout", "--threads", "100000"]);
    expect([threads.code, threads.stderr]).toEqual([
      2,
      expect.stringMatching(/^fedflare perplexity: --threads must be an integer in \[1, \d+\], got "100000"/),
    ]);
    const long = await runCli(["generate", "--model", "models/fedflare-sotu-4m", "--prompt", "hello", "--max-tokens", "100000"]);
    expect([long.code, long.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^fedflare generate: the prompt's 4 tokens and --max-tokens 100000 pass the model's 512 positions: ask for at most 508/,
      ),
    ]);
  });

  it("names a coordinator URL that is none or cannot be reached", async () => {
    process.env.FEDFLARE_OPERATOR_TOKEN = "x".repeat(16);
    writeFileSync(join(dir, "adapter_model.safetensors"), "x");
    const supply = (url: string) => runCli(["offsite", "supply", "--coordinator", url, "--federation", "f", "--adapter", dir]);
    const none = await supply("notaurl");
    expect([none.code, none.stderr]).toEqual([
      2,
      expect.stringMatching(/^fedflare offsite: --coordinator is the coordinator's http\(s\) URL, got "notaurl"/),
    ]);
    const closed = await supply("http://127.0.0.1:9");
    expect([closed.code, closed.stderr]).toEqual([
      2,
      expect.stringMatching(/^fedflare offsite: cannot reach the coordinator at http:\/\/127\.0\.0\.1:9: /),
    ]);
  });

  it("refuses to mix a run into a folder that holds another config's run, and names a corrupt metrics line", () => {
    const out = join(dir, "run");
    const g2p = parseRunConfig({ task: "g2p" }, "a");
    RunFolder.open(out, g2p);
    expect(() => RunFolder.open(out, parseRunConfig({ task: "spam" }, "b"))).toThrow(
      new UsageError(`${out} holds a run of another config: continue it with --resume ${out}, or give a new --out`),
    );
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8"))).toMatchObject({ task: "g2p" });
    writeFileSync(join(out, "metrics.jsonl"), '{"round": 0}\n{"round": 1,\n');
    expect(() => RunFolder.open(out, g2p)).toThrow(new RegExp(`^${join(out, "metrics.jsonl")}:2 is not valid JSON`));
  });
});
