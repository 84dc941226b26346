// HetLoRA's rank self-pruning through `fedflare run`'s client workers and aggregator in workerd, with a heavy
// penalty and γ 0.5 (a prune halves a rank). No client can prune in round 1: B starts at zero, so its tail has
// nothing to shrink. After that a client prunes where its tail ended its training smaller than the version
// had it; with AdamW's steps of about lr a value, a tail that the last round only began to grow may not shrink.
// This seeded run prunes c1 (assigned rank 2) to rank 1 in round 2 and c2 (rank 4) to 2 in round 3, which the
// uploads' bytes show, and their downloads, of only the ranks each trains; the last version is then the
// zero-padded mean of ranks 1 and 2, exactly zero past rank 2.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("cli-hetlora-prune");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const modelDir = writeHfModel(join(root, "model"), config, tinyWeights(config, 5));

describe("fedflare run with HetLoRA's rank self-pruning", () => {
  it("prunes no rank in round 1, then a client's when its tail shrank, for good, its uploads with it", async () => {
    const file = join(root, "prune.json");
    const out = join(root, "prune-run");
    const prune = { gamma: 0.5, lambda: 20, minRank: 1 };
    writeFileSync(
      file,
      JSON.stringify({
        model: modelDir,
        task: "spam",
        records: 80,
        clients: 2,
        rounds: 3,
        method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], hetero: { rule: "hetlora", ranks: { c1: 2 }, prune } },
        quant: "f32",
        local: { steps: 3, batchSize: 4, lr: 0.01, maxTokens: 48 },
        evalExamples: 6,
        testExamples: 12,
      }),
    );
    const r = await runCli(["run", "--config", file, "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    const rounds = readFileSync(join(out, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { round: number; clients?: { upload_bytes: number; download_bytes: number } });
    const adapter = decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), out);
    const values = [...adapter.tensors.values()].reduce((n, t) => n + t.length, 0);
    // The bytes of a rank-k upload's values: a quarter of the version's values a rank (it has rank 4), 4 bytes each.
    const atRank = (k: number) => (values / 4) * k * 4;
    const up = rounds.slice(1).map((x) => x.clients!.upload_bytes);
    // The mean of the two clients' bytes: ranks 2 and 4, then 1 and 4, then 1 and 2; headers of about the same
    // length each round, but for the digits of their metrics.
    expect(Math.abs(up[0]! - up[1]! - atRank(1) / 2)).toBeLessThan(40);
    expect(Math.abs(up[1]! - up[2]! - atRank(2) / 2)).toBeLessThan(40);
    // A client below the version's rank fetches only its ranks (the rank view), at the start of a round, before
    // any prune in it: c1 at 2, 2 and 1, c2 the whole version each round. So round 1 fetches the ranks it sends
    // (headers apart: an upload's carries its metrics), and round 3 half a rank less.
    const down = rounds.slice(1).map((x) => x.clients!.download_bytes);
    expect(Math.abs(down[0]! - up[0]!)).toBeLessThan(200);
    expect(down[1]).toBe(down[0]);
    expect(Math.abs(down[1]! - down[2]! - atRank(1) / 2)).toBeLessThan(40);
    for (const [name, shape] of adapter.shapes) {
      const t = adapter.tensors.get(name)!;
      const rankOf = (i: number) => (name.endsWith(".lora_A.weight") ? Math.floor(i / shape[1]!) : i % shape[1]!);
      expect(shape).toContain(4);
      expect(t.every((x, i) => rankOf(i) < 2 || x === 0)).toBe(true);
      for (const k of [0, 1]) expect(t.some((x, i) => rankOf(i) === k && x !== 0)).toBe(true);
    }
  }, 240_000);
});
