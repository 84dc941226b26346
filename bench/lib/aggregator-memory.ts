// The aggregator's own memory, folding and closing, measured apart from workerd: the Durable Object's
// accumulator code (durable-objects/aggregator/accumulator.ts) run in a Node process of its own over
// node:sqlite on a file (SQLite's pages stay in the kernel's cache). Each phase runs twice: once timed,
// once with the live JavaScript memory (V8 heap plus ArrayBuffers, after a full GC) sampled at every
// storage call, i.e. at every segment; the spread of those samples (highest less lowest, the phase's start
// included) is the phase's working memory.
// Resident-set peaks would not do: a process reuses pages it freed before, so they hide growth.
// Run by bench/aggregator.ts as  node --expose-gc bench/lib/aggregator-memory.ts RANK FOLDS ; prints one JSON line.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { closeSegments, StreamingSum } from "../../durable-objects/aggregator/accumulator.ts";
import { writeBlob, type SqlExec } from "../../durable-objects/shared/blobs.ts";
import { parseLlamaConfig } from "../../src/engine/config.ts";
import type { LinearModule } from "../../src/engine/llama/names.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { loraPairs, writePeftAdapter } from "../../src/engine/lora/peft.ts";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { flatLayout, tensorFileSource } from "../../src/fl/flat-tensors.ts";
import { encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";

export const BENCH_MODEL = {
  model_type: "llama",
  hidden_size: 1024,
  intermediate_size: 2816,
  num_hidden_layers: 16,
  num_attention_heads: 16,
  num_key_value_heads: 4,
  vocab_size: 32000,
  max_position_embeddings: 2048,
};
export const BENCH_MODULES: LinearModule[] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/**
 * A Durable Object's SQL over node:sqlite: what the accumulator calls (exec, toArray, one), blobs as
 * ArrayBuffers as workerd returns them.
 */
interface Probe {
  on: boolean;
  low: number;
  high: number;
}

function sqlStorage(db: DatabaseSync, probe: Probe): SqlExec {
  const exec = (query: string, ...bindings: unknown[]) => {
    if (probe.on) {
      const now = live();
      probe.low = Math.min(probe.low, now);
      probe.high = Math.max(probe.high, now);
    }
    const rows = db
      .prepare(query)
      .all(...(bindings as (Uint8Array | number | string)[]))
      .map((r) =>
        Object.fromEntries(
          Object.entries(r).map(([k, v]) => [k, v instanceof Uint8Array ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v]),
        ),
      );
    return { toArray: () => rows, one: () => rows[0] };
  };
  return { exec } as unknown as SqlExec;
}

const gc = (globalThis as { gc?: () => void }).gc!;
/** Live JavaScript memory after a full GC, MiB: the V8 heap in use and ArrayBuffers outside it. */
function live(): number {
  gc();
  const m = process.memoryUsage();
  return (m.heapUsed + m.arrayBuffers) / 2 ** 20;
}

/** Runs `phase` timed, then again (on fresh keys) probed: its ms and the spread of its live memory, MiB. */
function measure(probe: Probe, phase: (pass: number) => void): { ms: number; peakOverMiB: number } {
  const t = performance.now();
  phase(0);
  const ms = performance.now() - t;
  probe.low = probe.high = live();
  probe.on = true;
  phase(1);
  probe.on = false;
  return { ms, peakOverMiB: probe.high - probe.low };
}

if (process.argv[1]?.endsWith("aggregator-memory.ts")) {
  const rank = Number(process.argv[2]);
  const folds = Number(process.argv[3] ?? 3);
  const dir = mkdtempSync(join(tmpdir(), "fedflare-agg-mem-"));
  const db = new DatabaseSync(join(dir, "do.sqlite"));
  db.exec("CREATE TABLE blobs (key TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, chunk))");
  const probe: Probe = { on: false, low: 0, high: 0 };
  const sql = sqlStorage(db, probe);
  const model = parseLlamaConfig(BENCH_MODEL);
  const params = initLoraParams(model, rank, BENCH_MODULES, 0);
  const v0 = writePeftAdapter({
    config: { r: rank, alpha: 2 * rank, targetModules: BENCH_MODULES, dropout: 0, useRslora: false, baseModel: "bench", layers: null },
    pairs: loraPairs(params, rank, 2),
  })["adapter_model.safetensors"];
  writeBlob(sql, "v0", v0);
  const header = readSafetensorsHeader(v0);
  const layout = flatLayout(header);
  const shapes = new Map([...header.tensors].map(([k, t]) => [k, t.shape]));
  const bodies = Array.from({ length: folds }, (_, i) => {
    const u = seededUniform(i);
    return encodeTensorFile(
      new Map(
        [...shapes].map(([k, s]) => [
          k,
          normalSamples(
            u,
            s.reduce((a, b) => a * b, 1),
            1e-3,
          ),
        ]),
      ),
      shapes,
      { format: "pt", num_examples: "10" },
    );
  });
  const adapterBytes = layout.total * 4;
  params.clear();
  const fold = measure(probe, (pass) => {
    for (const [i, body] of bodies.entries()) {
      db.exec("BEGIN");
      const sum = new StreamingSum(sql, `sum${pass}`, layout, { count: i, totalWeight: 10 * i });
      sum.add(tensorFileSource(body, layout, header.dataStart, "upload").source, 10);
      db.exec("COMMIT");
    }
  });
  let slots: string[] = [];
  const close = measure(probe, (pass) => {
    db.exec("BEGIN");
    slots = closeSegments(sql, {
      layout,
      globalKey: "v0",
      dataStart: header.dataStart,
      mean: (start, n) => new StreamingSum(sql, `sum${pass}`, layout, { count: folds, totalWeight: 10 * folds }).mean(start, n),
      strategy: createStrategy({ name: "fedadam" }),
      round: 0,
      slots: [],
      stateKey: (s) => `state/${s}`,
      nextKey: `v1-${pass}`,
      nextStateKey: (s) => `state/${s}#${pass}`,
    });
    db.exec("COMMIT");
  });
  db.close();
  rmSync(dir, { recursive: true, force: true });
  const uploadMB = bodies[0]!.length / 1e6;
  process.stdout.write(
    `${JSON.stringify({
      rank,
      adapterBytes,
      uploadBytes: bodies[0]!.length,
      folds,
      foldPeakOverMiB: fold.peakOverMiB,
      foldMsPerMB: fold.ms / folds / uploadMB,
      closePeakOverMiB: close.peakOverMiB,
      closeMs: close.ms,
      slots,
    })}\n`,
  );
}
