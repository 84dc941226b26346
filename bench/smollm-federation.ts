// A federation on a model of SmolLM-135M's exact shape (30 layers, hidden 576, vocabulary 49,152; random
// weights, pre-quantized int8, written by bench/lib/shaped-model.ts) in workerd: split LoRA above a cut,
// the trunk below it at the inference endpoint (this Node process), two clients, two rounds. Each client
// runs alone in its own workerd process, and its memory is measured as bench/lib/workerd-memory.ts says:
// the isolate's peak (JS heap and buffers, and onnxruntime's WASM heap), the figure the platform's 128 MB
// limit counts, and the process's resident set for comparison.
// Run: node bench/smollm-federation.ts [--cut 29] [--batch 1] [--max-tokens 64] [--shapes DIR]
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { spamAssassinSplit } from "../cli/corpora.ts";
import { dirSource } from "../cli/model-dir.ts";
import { randomToken } from "../cli/local-federation.ts";
import { spamTask } from "../src/data/tasks/spam.ts";
import { loadModel } from "../src/engine/model-files.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { modelFingerprint, startEndpoint } from "../workers/inference-endpoint/server.ts";
import { shapedModel } from "./lib/shaped-model.ts";
import { writeResults } from "./lib/results.ts";
import { ClientMemoryMeter } from "./lib/workerd-memory.ts";

const { values } = parseArgs({
  options: {
    cut: { type: "string", default: "29" },
    batch: { type: "string", default: "1" },
    "max-tokens": { type: "string", default: "64" },
    shapes: { type: "string", default: "scratch/shapes" },
  },
});
const SHAPE = "HuggingFaceTB/SmolLM-135M";
const LIMIT_MIB = 128;
const log = (s: string) => process.stderr.write(`${s}\n`);
const cut = Number(values.cut);
const local = { steps: 2, batchSize: Number(values.batch), lr: 1e-3, maxTokens: Number(values["max-tokens"]) };

const dir = await shapedModel(values.shapes, SHAPE, "int8", log);
const modelFiles = new Map(
  readdirSync(dir)
    .filter((f) => /\.(json|safetensors)$/.test(f))
    .map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))] as const),
);
const hfConfig = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
const model = await loadModel(dirSource(dir));
const method = { type: "lora", r: 8, alpha: 16, targetModules: ["q_proj", "v_proj"], fromLayer: cut };
const token = randomToken();
const endpoint = await startEndpoint({
  model,
  fingerprint: await modelFingerprint(async (f) => modelFiles.get(f) ?? null, [...modelFiles.keys()]),
  name: SHAPE,
  port: 0,
  token,
});
const partition = spamAssassinSplit()
  .task.slice(0, 32)
  .flatMap((r) => spamTask().examples(r));
const meter = await ClientMemoryMeter.start();
log(
  `two clients, two rounds: split LoRA above layer ${cut} of ${model.config.numLayers}, ` +
    `batch ${local.batchSize} x ${local.maxTokens} tokens`,
);
let clients: Awaited<ReturnType<ClientMemoryMeter["federation"]>>;
try {
  clients = await meter.federation(
    {
      modelFiles,
      partition,
      federation: { model: { name: SHAPE, config: hfConfig, quant: "int8" }, method, local },
      bindings: { trunkUrl: endpoint.url, endpointToken: token },
    },
    2,
    2,
  );
} finally {
  await meter.dispose();
  await endpoint.close();
}

console.log(`\n${SHAPE}'s shape (int8), split LoRA above layer ${cut}, 2 clients x 2 rounds of ${local.steps} steps; MiB`);
printTable(
  ["client", "isolate peak", "JS", "WASM", `under ${LIMIT_MIB} MiB`, "process over idle", "steps", "upload bytes", "seconds"],
  clients.map((m, i) => [
    `client ${i + 1}`,
    fmt(m.isolatePeakMiB, 1),
    fmt(m.jsPeakMiB, 1),
    fmt(m.wasmHeapMiB, 1),
    m.isolatePeakMiB < LIMIT_MIB ? "yes" : "no",
    fmt(m.peakOverIdleMiB, 1),
    fmt(m.stepsDone),
    fmt(m.uploadBytes),
    fmt(m.seconds, 1),
  ]),
);
const file = await writeResults("smollm-federation", {
  shape: SHAPE,
  config: hfConfig,
  quant: "int8",
  method,
  local,
  clients: 2,
  rounds: 2,
  limitMiB: LIMIT_MIB,
  measure:
    "isolate peak: workerd's V8 inspector (JS heap + ArrayBuffers, sampled every 20 ms) plus the client's " +
    "reported onnxruntime WASM heap, bounded per 100 ms poll",
  results: clients,
});
console.log(`\nwrote ${file}`);
