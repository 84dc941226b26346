// Real model sizes on a Worker (issue 16): for the shapes of SmolLM-135M, SmolLM-360M, Qwen2.5-0.5B,
// TinyLlama-1.1B and Llama-3.2-1B (their published config.json, random int8 weights), a split-LoRA client
// (r 8 on q_proj and v_proj, the trunk at the endpoint) at batch 1 x 64 tokens:
// - the plan's lowest cut that fits a Worker's 128 MB (src/engine/client-plan.ts), or why none does;
// - onnxruntime-web's WASM heap and a step's time measured at that cut (or at one layer where none fits),
//   in a fresh Node process each (bench/lib/wasm-heap-probe.ts: the same WASM build a Worker runs);
// - bytes a client sends and receives per round: its LoRA delta up, the version and the trunk's hidden
//   states (bf16, once per example) down.
// The workerd measurement of a whole federation is bench/smollm-federation.ts.
// Run: node bench/model-sizes.ts
import { execFileSync } from "node:child_process";
import * as v from "valibot";
import { MIB, planStep } from "../src/engine/client-plan.ts";
import { parseLlamaConfig } from "../src/engine/config.ts";
import { loraServer, splitFootprint } from "../src/fl/methods/lora/server.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { PUBLISHED_CONFIGS } from "./lib/published-configs.ts";
import { writeResults } from "./lib/results.ts";

const SETTINGS = { quant: "int8" as const, batch: 1, seq: 64 };
/** Examples a client holds, for the hidden states it downloads once (cached after). */
const EXAMPLES = 64;
const log = (s: string) => process.stderr.write(`${s}\n`);

const rows = [];
for (const [shape, json] of Object.entries(PUBLISHED_CONFIGS)) {
  const c = parseLlamaConfig(json);
  const L = c.numLayers;
  const cuts = Array.from({ length: L - 1 }, (_, i) => i + 1);
  const lowest = cuts.find((cut) => planStep(c, splitFootprint(c, cut), SETTINGS).fits) ?? null;
  const measuredCut = lowest ?? L - 1;
  const plan = planStep(c, splitFootprint(c, measuredCut), SETTINGS);
  log(`${shape}: plan's lowest cut ${lowest ?? "none"}; measuring at ${measuredCut}`);
  const out = execFileSync(
    process.execPath,
    [
      "--no-wasm-tier-up",
      new URL("./lib/wasm-heap-probe.ts", import.meta.url).pathname,
      JSON.stringify({ config: json, cut: measuredCut, ...SETTINGS }),
    ],
    { encoding: "utf8", maxBuffer: 1 << 20 },
  );
  const probe = JSON.parse(out.trim().split("\n").at(-1)!) as { wasmHeapBytes: number; stepMs: number };
  const lora = v.parse(loraServer.config, { type: "lora", r: 8, alpha: 16, targetModules: ["q_proj", "v_proj"], fromLayer: measuredCut });
  const floats = loraServer.versionFloats(lora, c);
  const why =
    lowest !== null
      ? ""
      : `one layer's client is predicted at ${fmt(plan.peakBytes / MIB, 0)} MiB: the head alone is ` +
        `${fmt((c.vocabSize * c.hiddenSize) / MIB, 0)} MiB as int8, held in JS and copied into the WASM heap`;
  rows.push({
    shape,
    lowestCut: lowest,
    measuredCut,
    heldMiB: plan.heldBytes / MIB,
    predictedWasmMiB: plan.wasmBytes / MIB,
    measuredWasmMiB: probe.wasmHeapBytes / MIB,
    predictedPeakMiB: plan.peakBytes / MIB,
    stepMs: probe.stepMs,
    tokensPerSecond: (SETTINGS.batch * SETTINGS.seq) / (probe.stepMs / 1000),
    upBytes: floats * 4,
    downBytes: floats * 4 + EXAMPLES * SETTINGS.seq * c.hiddenSize * 2,
    why,
  });
}

console.log(`split LoRA (r 8, q_proj and v_proj), int8 base, batch ${SETTINGS.batch} x ${SETTINGS.seq} tokens; MiB`);
printTable(
  ["shape", "lowest cut", "holds", "WASM predicted", "WASM measured", "peak predicted", "step ms", "tokens/s", "up KiB", "down MiB"],
  rows.map((r) => [
    r.shape,
    r.lowestCut === null ? `none (measured at ${r.measuredCut})` : String(r.lowestCut),
    fmt(r.heldMiB, 1),
    fmt(r.predictedWasmMiB, 1),
    fmt(r.measuredWasmMiB, 1),
    fmt(r.predictedPeakMiB, 1),
    fmt(r.stepMs, 0),
    fmt(r.tokensPerSecond, 0),
    fmt(r.upBytes / 1024, 0),
    fmt(r.downBytes / MIB, 1),
  ]),
);
for (const r of rows) if (r.why) console.log(`${r.shape}: no cut fits; ${r.why}`);
console.log(`\nwrote ${await writeResults("model-sizes", { settings: SETTINGS, examples: EXAMPLES, rows })}`);
