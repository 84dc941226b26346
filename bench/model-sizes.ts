// Real model sizes on a Worker (issue 16): for the shapes of SmolLM-135M, SmolLM-360M, Qwen2.5-0.5B,
// TinyLlama-1.1B and Llama-3.2-1B (their published config.json, random int8 weights), a split-LoRA client
// (r 8 on q_proj and v_proj, the trunk at the endpoint) at batch 1 x 64 tokens:
// - the plan's lowest cut that fits a Worker's 128 MB (src/engine/client-plan.ts), or why none does;
// - onnxruntime-web's WASM heap and a step's time at that cut (or at one layer where none fits), in a
//   fresh Node process each (bench/lib/wasm-heap-probe.ts: the same WASM build a Worker runs);
// - the same client in workerd (bench/lib/workerd-memory.ts): one round of a federation on the shape's
//   model folder (written once under --shapes by bench/lib/shaped-model.ts), its isolate's measured peak
//   against the plan's prediction, its steady step time with one step per invocation, and the bytes it
//   sent and downloaded from the coordinator; the trunk's hidden states it reads from the endpoint are
//   computed (bf16, seq x hidden per example, read once per example it trains on and cached).
// Run: node bench/model-sizes.ts [--shapes scratch/shapes] [--node-only]
import { execFileSync } from "node:child_process";
import { benchArgs } from "./lib/args.ts";
import * as v from "valibot";
import { MIB, planStep } from "../src/engine/client-plan.ts";
import { parseLlamaConfig } from "../src/engine/config.ts";
import { loraServer, splitFootprint } from "../src/fl/methods/lora/server.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { measuredModel, spamPartition } from "./lib/measured-clients.ts";
import { PUBLISHED_CONFIGS } from "./lib/published-configs.ts";
import { writeResults } from "./lib/results.ts";
import { type ShapeName, shapedModel } from "./lib/shaped-model.ts";
import { type ClientMemory, ClientMemoryMeter } from "./lib/workerd-memory.ts";

const { values } = benchArgs({
  options: {
    shapes: { type: "string", default: "scratch/shapes" },
    "node-only": { type: "boolean", default: false },
  },
});
const SETTINGS = { quant: "int8" as const, batch: 1, seq: 64 };
/** Local steps of the workerd round: the first builds the sessions, the rest give the steady step time. */
const STEPS = 4;
const log = (s: string) => process.stderr.write(`${s}\n`);

const partition = spamPartition();
const meter = values["node-only"] ? null : await ClientMemoryMeter.start();

/** One round of one split-LoRA client above `cut` of `shape`'s model, in workerd. */
async function inWorkerd(m: ClientMemoryMeter, shape: ShapeName, cut: number): Promise<ClientMemory> {
  const dir = await shapedModel(values.shapes, shape, SETTINGS.quant, log);
  const { files: modelFiles, hfConfig, endpoint } = await measuredModel(dir, shape);
  try {
    return await m.measure({
      modelFiles,
      partition,
      federation: {
        model: { name: shape, config: hfConfig, quant: SETTINGS.quant },
        method: { type: "lora", r: 8, alpha: 16, targetModules: ["q_proj", "v_proj"], fromLayer: cut },
        local: { steps: STEPS, batchSize: SETTINGS.batch, lr: 1e-3, maxTokens: SETTINGS.seq },
      },
      bindings: { trunkUrl: endpoint.url, endpointToken: endpoint.token, stepsPerInvocation: 1 },
    });
  } finally {
    await endpoint.close();
  }
}

const rows = [];
try {
  for (const [shape, json] of Object.entries(PUBLISHED_CONFIGS) as [ShapeName, unknown][]) {
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
    const workerd = meter && (await inWorkerd(meter, shape, measuredCut));
    if (workerd) log(`${shape}: isolate ${fmt(workerd.isolatePeakMiB, 1)} MiB, step ${fmt(workerd.stepMs ?? Number.NaN, 0)} ms in workerd`);
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
      hiddenStatesPerExampleBytes: SETTINGS.seq * c.hiddenSize * 2,
      workerd,
      why,
    });
  }
} finally {
  await meter?.dispose();
}

const tokens = SETTINGS.batch * SETTINGS.seq;
console.log(`split LoRA (r 8, q_proj and v_proj), int8 base, batch ${SETTINGS.batch} x ${SETTINGS.seq} tokens; MiB`);
printTable(
  [
    "shape",
    "lowest cut",
    "holds",
    "WASM pred",
    "WASM Node",
    "peak pred",
    "peak workerd",
    "step ms Node",
    "step ms workerd",
    "tokens/s workerd",
  ],
  rows.map((r) => [
    r.shape,
    r.lowestCut === null ? `none (measured at ${r.measuredCut})` : String(r.lowestCut),
    fmt(r.heldMiB, 1),
    fmt(r.predictedWasmMiB, 1),
    fmt(r.measuredWasmMiB, 1),
    fmt(r.predictedPeakMiB, 1),
    r.workerd ? fmt(r.workerd.isolatePeakMiB, 1) : "-",
    fmt(r.stepMs, 0),
    r.workerd?.stepMs ? fmt(r.workerd.stepMs, 0) : "-",
    r.workerd?.stepMs ? fmt(tokens / (r.workerd.stepMs / 1000), 0) : "-",
  ]),
);
console.log("\nbytes: KiB up and of the version down per round (measured in workerd where run), KiB of hidden states per example");
printTable(
  ["shape", "up (LoRA delta)", "up measured", "version down measured", "hidden states per example"],
  rows.map((r) => [
    r.shape,
    fmt(r.upBytes / 1024, 0),
    r.workerd ? fmt(r.workerd.uploadBytes / 1024, 0) : "-",
    r.workerd ? fmt(r.workerd.downloadBytes / 1024, 0) : "-",
    fmt(r.hiddenStatesPerExampleBytes / 1024, 0),
  ]),
);
for (const r of rows) if (r.why) console.log(`${r.shape}: no cut fits; ${r.why}`);
console.log(`\nwrote ${await writeResults("model-sizes", { settings: SETTINGS, steps: STEPS, rows })}`);
