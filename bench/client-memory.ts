// A client's peak memory in workerd for one round of each method (issue 16, item 3): LoRA on the whole
// model, split LoRA at each cut (the trunk below at the inference endpoint), offsite-tuning on its
// emulator, FedKSeed and FedBPT on the client's own weights and at the endpoint, discrete prompts at a
// completions API. Each row is one client alone in its own workerd process (bench/lib/workerd-memory.ts);
// the endpoint runs in this Node process, outside what is measured.
// Each run is kept in bench/results/client-memory.json under its --as name, so runs before and after a
// change sit side by side.
// Run: node bench/client-memory.ts [--as NAME] [--model DIR] [--quant f32|int8|int4] [--batch 4]
//      [--max-tokens 64] [--only NAME,NAME] [--no-write]
import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { benchArgs } from "./lib/args.ts";
import { tokenizerFiles } from "../cli/model-dir.ts";
import { runMethods } from "../src/fl/methods/run.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { measuredModel, spamPartition } from "./lib/measured-clients.ts";
import { writeResults } from "./lib/results.ts";
import { type ClientMemory, ClientMemoryMeter } from "./lib/workerd-memory.ts";

const { values } = benchArgs({
  options: {
    as: { type: "string", default: "current" },
    model: { type: "string", default: "models/fedflare-mail-4m" },
    quant: { type: "string", default: "f32" },
    batch: { type: "string", default: "4" },
    "max-tokens": { type: "string", default: "64" },
    only: { type: "string" },
    "no-write": { type: "boolean", default: false },
  },
});
const dir = values.model;
const { files: modelFiles, hfConfig, model, endpoint } = await measuredModel(dir, basename(dir));
const L = model.config.numLayers;
const local = { steps: 2, batchSize: Number(values.batch), lr: 1e-3, maxTokens: Number(values["max-tokens"]) };
const verbal = { labels: ["spam", "ham"], labelWords: ["offer", "work"] };
const lora = { type: "lora", r: 8, alpha: 16, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] };

interface Row {
  name: string;
  method: Record<string, unknown>;
  /** What the client is given: nothing (it holds the model), the endpoint as its trunk, or as a completions API. */
  at: "local" | "trunk" | "api";
}
const methods: Row[] = [
  { name: "lora", method: lora, at: "local" },
  ...Array.from(
    { length: L - 1 },
    (_, i) => ({ name: `split-lora-cut-${i + 1}`, method: { ...lora, fromLayer: i + 1 }, at: "trunk" }) satisfies Row,
  ),
  { name: "offsite", method: { type: "offsite", bottom: 1, top: 1, middle: L >= 6 ? Math.floor((L - 2) / 2) : 0 }, at: "local" },
  ...(["local", "trunk"] as const).flatMap((at) => [
    {
      name: `fedkseed-${at}`,
      method: { type: "fedkseed", k: 1024, ...verbal, trains: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"] } },
      at,
    },
    {
      name: `fedbpt-${at}`,
      method: { type: "fedbpt", promptTokens: 5, dimension: 50, generations: 2, placement: "suffix", ...verbal },
      at,
    },
  ]),
  {
    name: "discrete",
    method: { type: "discrete", slots: 2, phrases: ["Mail:", "Is this spam?", "Answer:", "Label:"], population: 3, ...verbal },
    at: "api",
  },
];
const rows = methods.filter((r) => !values.only || values.only.split(",").includes(r.name));

const partition = spamPartition();
const meter = await ClientMemoryMeter.start();
const measured: (Row & ClientMemory)[] = [];
try {
  for (const row of rows) {
    const { side, config: method } = runMethods.parse(row.method);
    const prepared = side.prepare?.(method, model, { name: basename(dir), tokenizer: tokenizerFiles(dir) });
    const memory = await meter.measure({
      modelFiles: prepared?.modelFiles ?? modelFiles,
      partition,
      federation: {
        model: { name: basename(dir), config: hfConfig, quant: values.quant },
        method: row.method,
        local,
      },
      ...(prepared ? { initial: prepared.initial } : {}),
      bindings: {
        ...(row.at === "trunk" ? { trunkUrl: endpoint.url } : row.at === "api" ? { completionsUrl: `${endpoint.url}/v1` } : {}),
        endpointToken: endpoint.token,
      },
    });
    process.stderr.write(
      `${row.name}: isolate ${memory.isolatePeakMiB.toFixed(1)} MiB; process ` +
        `${memory.peakOverIdleMiB.toFixed(1)} MiB over ${memory.idleMiB.toFixed(1)} MiB idle\n`,
    );
    measured.push({ ...row, ...memory });
  }
} finally {
  await meter.dispose();
  await endpoint.close();
}

const setting = `${local.steps} local steps of batch ${local.batchSize} at ${local.maxTokens} tokens`;
console.log(`\n${basename(dir)} (${values.quant}), ${setting}; MiB: the isolate (JS heap and buffers + WASM heap) and the workerd process`);
printTable(
  ["method", "isolate peak", "JS", "WASM", "process over idle", "idle", "measure", "upload bytes", "seconds"],
  measured.map((m) => [
    m.name,
    fmt(m.isolatePeakMiB, 1),
    fmt(m.jsPeakMiB, 1),
    fmt(m.wasmHeapMiB, 1),
    fmt(m.peakOverIdleMiB, 1),
    fmt(m.idleMiB, 1),
    m.measure,
    fmt(m.uploadBytes),
    fmt(m.seconds, 1),
  ]),
);
if (!values["no-write"]) {
  const file = new URL("./results/client-memory.json", import.meta.url);
  const runs = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { runs: unknown[] }).runs : [];
  const run = { name: values.as, model: basename(dir), config: hfConfig, quant: values.quant, local, rows: measured };
  console.log(`\nwrote ${await writeResults("client-memory", { runs: [...runs, run] })}`);
}
