import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../fixtures/hf-model.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("phrases");
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("fedflare phrases", () => {
  it("prints the words most associated with a label as a JSON array, and refuses data without two labels", async () => {
    const file = join(root, "mails.jsonl");
    const rows = [
      ...Array.from({ length: 5 }, (_, i) => ({ prompt: `Mail ${i}: win money free offer`, completion: " spam" })),
      ...Array.from({ length: 5 }, (_, i) => ({ prompt: `Mail ${i}: meeting agenda attached`, completion: " ham" })),
    ];
    writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n"));
    const r = await runCli(["phrases", "--data", file, "--count", "4"]);
    expect(r.code, r.stderr).toBe(0);
    const mined = JSON.parse(r.stdout) as string[];
    expect(mined).toHaveLength(4);
    // "mail" is in every record: no association with either label.
    for (const w of mined) expect(["win", "money", "free", "offer", "meeting", "agenda", "attached"]).toContain(w);
    writeFileSync(
      file,
      rows
        .slice(0, 5)
        .map((r) => JSON.stringify(r))
        .join("\n"),
    );
    const one = await runCli(["phrases", "--data", file]);
    expect(one.code).toBe(2);
    expect(one.stderr).toMatch(/at least two distinct completions/);
  });
});
