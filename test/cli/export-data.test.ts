import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseJsonl } from "../../src/data/jsonl.ts";
import { tempDir } from "../fixtures/hf-model.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("export");
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("fedflare export-data", () => {
  it("writes a seeded sample of CMUdict as grapheme-to-phoneme pairs", async () => {
    const out = (n: string) => join(root, n);
    await Promise.all([
      runCli(["export-data", "--dataset", "cmudict", "--records", "50", "--out", out("a.jsonl")]),
      runCli(["export-data", "--dataset", "cmudict", "--records", "50", "--out", out("b.jsonl")]),
    ]);
    const a = parseJsonl(readFileSync(out("a.jsonl"), "utf8"));
    expect(a).toHaveLength(50);
    expect(readFileSync(out("b.jsonl"), "utf8")).toBe(readFileSync(out("a.jsonl"), "utf8"));
    for (const r of a) {
      expect(r).toMatchObject({
        prompt: expect.stringMatching(/^Pronounce [a-z]{3,10}:$/),
        completion: expect.stringMatching(/^( [A-Z]{1,2}[012]?)+$/),
      });
    }
  });

  it("writes SOTU addresses as text records, and refuses an unknown dataset", async () => {
    const out = join(root, "s.jsonl");
    expect((await runCli(["export-data", "--dataset", "sotu", "--records", "2", "--out", out])).code).toBe(0);
    const rows = parseJsonl(readFileSync(out, "utf8"));
    expect(rows).toHaveLength(2);
    expect("text" in rows[0]! && rows[0].text).toMatch(/^Fellow-Citizens of the Senate/);
    const bad = await runCli(["export-data", "--dataset", "wiki", "--out", out]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dataset must be cmudict or sotu/);
  });
});
