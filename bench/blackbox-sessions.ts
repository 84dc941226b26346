// CPU per client round of the black-box methods that run forward graphs on a client's own weights
// (FedKSeed, FedBPT; issue 16, item 9: their clients keep their forward sessions across slices). Their
// rows of bench/blackbox.ts at full local work (its non-quick steps and generations), one round with two
// clients of 250 records each, each run as a real federation (`fedflare run`: client workers in workerd),
// a client's CPU read from the workerd process (cli/process-cpu.ts). This machine is noisy: compare runs
// made back to back. Each `--as` is kept in the results file, and the ratio of the last two is printed.
// `--batch N` sets both rows' batch size: at 1 a slice does little forward work, and what it costs
// besides (a graph build, per slice before this change) shows.
// Run: node bench/blackbox-sessions.ts --as NAME [--batch N] [--results FILE] [--out DIR]
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "./lib/args.ts";
import { run } from "../cli/commands/run.ts";
import { parseRunConfig } from "../cli/run-config.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { machineInfo } from "./lib/results.ts";

const { values } = benchArgs({
  options: {
    as: { type: "string" },
    results: { type: "string", default: new URL("./results/blackbox-sessions.json", import.meta.url).pathname },
    out: { type: "string" },
    batch: { type: "string" },
  },
});
if (!values.as) throw new Error("name this run: --as NAME (e.g. before, after)");
const batch = values.batch === undefined ? null : Number(values.batch);
const verbal = { labels: ["spam", "ham"], labelWords: ["offer", "work"] };
const base = {
  model: "models/fedflare-mail-4m",
  task: "spam",
  records: 500,
  partitioner: { type: "iid" },
  clients: 2,
  rounds: 1,
  quant: "f32",
  seed: 0,
  deadlineSeconds: 3600,
} as const;
// bench/blackbox.ts's fedkseed and fedbpt rows.
const methods: Record<string, Record<string, unknown>> = {
  fedkseed: {
    method: { type: "fedkseed", k: 4096, epsilon: 1e-3, ...verbal, trains: { type: "full", tensors: ["model.norm.weight"] } },
    local: { steps: 40, batchSize: 8, lr: 0.05, maxTokens: 96 },
  },
  fedbpt: {
    method: { type: "fedbpt", promptTokens: 5, dimension: 50, sigma: 1, generations: 4, placement: "suffix", ...verbal },
    local: { steps: 1, batchSize: 16, lr: 1, maxTokens: 96 },
  },
};

interface Round {
  round: number;
  validation_loss: number;
  validation_accuracy: number | null;
  clients?: { cpu_seconds: number | null };
}

const out = values.out ?? mkdtempSync(join(tmpdir(), "fedflare-blackbox-sessions-"));
const measured: Record<string, { cpuSecondsPerClientRound: number | null; validationLoss: number; validationAccuracy: number | null }> = {};
for (const [name, config] of Object.entries(methods)) {
  const file = join(out, `${name}.json`);
  const local = { ...(config.local as object), ...(batch === null ? {} : { batchSize: batch }) };
  writeFileSync(file, JSON.stringify(parseRunConfig({ ...base, ...config, local }, name)));
  process.stderr.write(`\n== ${name} (${values.as})\n`);
  await run(["--config", file, "--out", join(out, name)]);
  const rounds = readFileSync(join(out, name, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Round);
  const final = rounds.at(-1)!;
  // The held-out scores show that the runs compared trained alike (the same seeds give the same version).
  measured[name] = {
    cpuSecondsPerClientRound: final.clients?.cpu_seconds ?? null,
    validationLoss: final.validation_loss,
    validationAccuracy: final.validation_accuracy,
  };
}

const file = values.results;
type Entry = { name: string; batch: number | null; machine: ReturnType<typeof machineInfo>; measured: typeof measured };
const entries: Entry[] = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { runs: Entry[] }).runs : [];
entries.push({ name: values.as, batch, machine: machineInfo(), measured });
writeFileSync(file, `${JSON.stringify({ config: { ...base, methods }, runs: entries }, null, 2)}\n`);
const cpu = (e: Entry, m: string) => e.measured[m]?.cpuSecondsPerClientRound ?? null;
const label = (e: Entry) => (e.batch === null ? e.name : `${e.name} (batch ${e.batch})`);
const last = entries.at(-1)!;
const prev = entries.at(-2);
printTable(
  ["method", ...entries.map((e) => `${label(e)}: CPU s/client/round`), ...(prev ? [`${label(last)} / ${label(prev)}`] : [])],
  Object.keys(methods).map((m) => {
    const ratio = prev && cpu(prev, m) && cpu(last, m) !== null ? fmt(cpu(last, m)! / cpu(prev, m)!, 3) : "-";
    return [m, ...entries.map((e) => (cpu(e, m) === null ? "-" : fmt(cpu(e, m)!, 1))), ...(prev ? [ratio] : [])];
  }),
);
console.log(`wrote ${file}; runs in ${out}`);
