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
