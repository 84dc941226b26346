// What a user's bad input gets from the CLI: a message naming the file, the folder or the number and a non-zero
// exit, never a stack trace, and a run folder never mixed with another config's run. One case goes through the
// installed binary (the errors main() prints); the others call the commands in this process, as main() does.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generate } from "../../cli/commands/generate.ts";
import { offsite } from "../../cli/commands/offsite.ts";
import { threads } from "../../cli/numbers.ts";
import { parseRunConfig } from "../../cli/run-config.ts";
import { RunFolder, readRunConfig } from "../../cli/run/run-folder.ts";
import { UsageError } from "../../cli/usage.ts";
import { runCli } from "./run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "fedflare-bad-input-"));

describe("bad input at the command line", () => {
  it("names a missing file or a file that is not JSON, without a stack trace", async () => {
    const missing = await runCli(["run", "--config", join(dir, "nope.json")]);
    expect([missing.code, missing.stderr]).toEqual([
      1,
      `fedflare run: ENOENT: no such file or directory, open '${join(dir, "nope.json")}'\n`,
    ]);
    writeFileSync(join(dir, "bad.json"), '{"records": 30,');
    expect(() => readRunConfig(join(dir, "bad.json"))).toThrow(new RegExp(`^${join(dir, "bad.json")} is not valid JSON: `));
  });

  it("refuses numbers out of range before the work starts: threads past the cores, tokens past the context", async () => {
    expect(() => threads("100000")).toThrow(/^--threads must be an integer in \[1, \d+\], got "100000"/);
    await expect(generate(["--model", "models/fedflare-sotu-4m", "--prompt", "hello", "--max-tokens", "100000"])).rejects.toThrow(
      new UsageError("the prompt's 4 tokens and --max-tokens 100000 pass the model's 512 positions: ask for at most 508"),
    );
  });

  it("names a coordinator URL that is none or cannot be reached", async () => {
    process.env.FEDFLARE_OPERATOR_TOKEN = "x".repeat(16);
    writeFileSync(join(dir, "adapter_model.safetensors"), "x");
    const supply = (url: string) => offsite(["supply", "--coordinator", url, "--federation", "f", "--adapter", dir]);
    await expect(supply("notaurl")).rejects.toThrow(new UsageError(`--coordinator is the coordinator's http(s) URL, got "notaurl"`));
    await expect(supply("http://127.0.0.1:9")).rejects.toThrow(/^cannot reach the coordinator at http:\/\/127\.0\.0\.1:9: /);
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
