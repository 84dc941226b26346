import { benchArgs } from "./lib/args.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { shapedModel } from "./lib/shaped-model.ts";
import { measuredModel, spamPartition } from "./lib/measured-clients.ts";
import { writeResults } from "./lib/results.ts";
import { ClientMemoryMeter } from "./lib/workerd-memory.ts";

const { values } = benchArgs({
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
const { files: modelFiles, hfConfig, model, endpoint } = await measuredModel(dir, SHAPE);
const method = { type: "lora", r: 8, alpha: 16, targetModules: ["q_proj", "v_proj"], fromLayer: cut };
const partition = spamPartition();
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
      bindings: { trunkUrl: endpoint.url, endpointToken: endpoint.token },
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
