// The black-box methods beside white-box LoRA on one task and one data split, each run as a real
// federation (`fedflare run`: client workers and the aggregator Durable Object in workerd): per method,
// the bytes a client uploads and downloads per round, the rows it scores per round (forward passes of a
// prompt + label: API queries for a client that holds no model), the CPU seconds of the client workers
// per client round, and held-out accuracy after every round, against the base model's zero-shot
// accuracy and against LoRA. Task: SpamAssassin spam/ham with label words, iid over the clients; and a
// generation task (CMUdict grapheme-to-phoneme) for the methods that train on a completion's NLL
// (LoRA, FedKSeed), scored by held-out loss.
// The base is fedflare-mail-4m: the default model knows speeches only and scores " spam" and " ham" with
// no regard to the mail, which leaves a method that steers the base's outputs only the label prior.
// Run: node bench/blackbox.ts [--quick] [--rounds N] [--only lora,fedkseed,...] [--model DIR] [--out DIR]
// With --out, methods whose run in DIR/<method> has the same config and every round are read, not run again.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "./lib/args.ts";
import { run } from "../cli/commands/run.ts";
import { parseRunConfig, type RunConfig } from "../cli/run-config.ts";
import { runData } from "../cli/run-data.ts";
import { dirSource } from "../cli/model-dir.ts";
import { balancedAccuracy } from "../src/data/metrics.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { loadModel } from "../src/engine/model-files.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { labelAccuracy, labeledPrompts } from "../src/engine/train/evaluate.ts";
import { clientMethods } from "../src/fl/methods/client.ts";
import { pmiPhrases } from "../src/fl/methods/discrete/policy-gradient.ts";
import { linePlotSvg } from "../src/report/line-plot.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    only: { type: "string" },
    model: { type: "string", default: "models/fedflare-mail-4m" },
    out: { type: "string" },
  },
});
const quick = values.quick;
const ROUNDS = Number(values.rounds ?? (quick ? 1 : 5));
const labels = ["spam", "ham"];
// The black-box methods score label words: " offer" for spam, " work" for ham. In fedflare-mail-4m's
// vocabulary " ham" is two tokens; (" offer", " work") is a single-token pair the base's next-token
// distribution after "Answer:" ranks differently for spam and ham (bench/quality.ts's zero-shot rows).
const labelWords = ["offer", "work"];
const verbal = { labels, labelWords };
const base = {
  model: values.model,
  task: "spam",
  records: quick ? 200 : 1000,
  partitioner: { type: "iid" },
  clients: quick ? 2 : 4,
  rounds: ROUNDS,
  quant: "f32",
  seed: 0,
  deadlineSeconds: 3600,
} as const;
const local = (steps: number, batchSize: number, lr: number) => ({
  steps: quick ? Math.min(steps, 2) : steps,
  batchSize,
  lr,
  maxTokens: 96,
});

// Candidate phrases for the discrete prompts: PMI-mined from the first client's partition (a participant
// contributes its vocabulary; the others' data stays put).
const first = runData(parseRunConfig({ ...base, method: { type: "fedbpt", labels } }, "bench")).partitions[0]!;
const phrases = pmiPhrases(labeledPrompts(first), 24, 3);

// The prompt methods place their prompt as a suffix, right before the label words: on this 4-layer base
// no prefix phrase moves the label scores by 0.1 nats, suffix phrases move them by up to 2.
const discrete = { type: "discrete", slots: 4, phrases, population: 4, placement: "suffix", ...verbal };
// The generation task runs on the default model: nothing in it is mail.
const g2p = { model: "models/fedflare-sotu-4m", task: "g2p", records: quick ? 200 : 1200, partitioner: { type: "iid" } };
/**
 * The runs, by name. `ownBaseline`: the run's gain is over its own round 0, not over the base model's
 * zero-shot accuracy on the black-box methods' label words, since it scores the label names it trains.
 */
const methods: Record<string, { label: string; config: Record<string, unknown>; ownBaseline?: boolean }> = {
  lora: {
    label: "LoRA (white-box, gradients)",
    ownBaseline: true,
    config: {
      method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], fromLayer: 0 },
      trunk: "local",
      local: local(20, 8, 1e-2),
    },
  },
  fedkseed: {
    label: "FedKSeed (zeroth-order, shared seeds)",
    // The final norm's 256 weights scale the features the tied head reads: few enough dimensions for
    // zeroth-order steps to move the label scores in 5 rounds (a rank-1 LoRA on v_proj did not).
    config: {
      method: { type: "fedkseed", k: 4096, epsilon: 1e-3, ...verbal, trains: { type: "full", tensors: ["model.norm.weight"] } },
      local: local(40, 8, 0.05),
    },
  },
  fedbpt: {
    label: "FedBPT (CMA-ES, soft prompt)",
    config: {
      method: { type: "fedbpt", promptTokens: 5, dimension: 50, sigma: 1, generations: quick ? 1 : 4, placement: "suffix", ...verbal },
      local: local(1, 16, 1),
    },
  },
  discrete: { label: "discrete prompts (API only)", config: { method: discrete, local: local(10, 16, 0.05) } },
  fedone: {
    label: "discrete prompts, FedOne (1 client/round)",
    config: { method: discrete, clientsPerRound: 1, local: local(10, 16, 0.05) },
  },
  "g2p-lora": {
    label: "LoRA (white-box, gradients)",
    config: {
      ...g2p,
      method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], fromLayer: 0 },
      trunk: "local",
      local: local(10, 8, 3e-3),
    },
  },
  "g2p-fedkseed": {
    label: "FedKSeed (zeroth-order, shared seeds)",
    config: {
      ...g2p,
      method: {
        type: "fedkseed",
        k: 4096,
        epsilon: 1e-3,
        trains: {
          type: "full",
          tensors: ["model.norm.weight", "model.layers.3.post_attention_layernorm.weight", "model.layers.3.input_layernorm.weight"],
        },
      },
      local: local(40, 16, 0.01),
    },
  },
};
const chosen = (values.only ?? Object.keys(methods).join(",")).split(",");

interface RoundRecord {
  round: number;
  validation_loss: number;
  validation_accuracy: number | null;
  validation_balanced_accuracy?: number | null;
  clients?: { upload_bytes: number; download_bytes: number; api_rows?: number; api_requests?: number; cpu_seconds: number | null };
}

const out = values.out ?? mkdtempSync(join(tmpdir(), "fedflare-blackbox-"));
mkdirSync(out, { recursive: true });
const readRounds = (dir: string) =>
  existsSync(join(dir, "metrics.jsonl"))
    ? readFileSync(join(dir, "metrics.jsonl"), "utf8")
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as RoundRecord)
    : [];
const results: Record<
  string,
  { label: string; config: RunConfig; rounds: RoundRecord[]; rowsPerClientRound: number; ownBaseline: boolean }
> = {};
for (const name of chosen) {
  const m = methods[name];
  if (!m) throw new Error(`unknown method "${name}": one of ${Object.keys(methods).join(", ")}`);
  const config = parseRunConfig({ ...base, ...m.config }, name);
  const dir = join(out, name);
  const file = join(out, `${name}.json`);
  const sameConfig =
    existsSync(join(dir, "config.json")) && readFileSync(join(dir, "config.json"), "utf8") === `${JSON.stringify(config, null, 2)}\n`;
  if (!sameConfig || readRounds(dir).length !== ROUNDS + 1) {
    rmSync(dir, { recursive: true, force: true });
    writeFileSync(file, JSON.stringify(config));
    process.stderr.write(`\n== ${name}: ${m.label}\n`);
    await run(["--config", file, "--out", dir]);
  }
  const rounds = readRounds(dir);
  results[name] = { label: m.label, config, rounds, rowsPerClientRound: rowsScored(config), ownBaseline: m.ownBaseline ?? false };
}

/**
 * Rows (prompt + label sequences) a client scores per round, as its client side plans them where it is
 * offered an endpoint and an API: discrete prompts' API queries, FedKSeed's two points per step and FedBPT's
 * candidates per generation, each over a batch and every label; none for a method that trains on its own weights.
 */
function rowsScored(c: RunConfig): number {
  const side = clientMethods.get(c.method.type);
  return side.demands(c.method, c.local, side.placement(c.method, { endpoint: true, api: true })).remoteRows;
}

const spamRuns = Object.entries(results).filter(([name]) => !name.startsWith("g2p-"));
const genRuns = Object.entries(results).filter(([name]) => name.startsWith("g2p-"));
const heldOut = runData(parseRunConfig({ ...base, method: { type: "fedbpt", labels } }, "bench")).validation;
const heldOutLabeled = labeledPrompts(heldOut);
const majority = Math.max(...labels.map((l) => heldOutLabeled.filter((x) => x.label === l).length)) / heldOut.length;
// Zero-shot: the base model, no prompt, scoring the label words; a prompt method's round 0 is its
// starting prompt instead (the first phrase in every slot, p0's random tokens).
const baseModel = await loadModel(dirSource(base.model));
const baseForward = await ForwardModel.create(ortNodeRuntime(2), baseModel.config, baseModel.weights, { kind: "forward", nll: true });
const zeroShotRun = await labelAccuracy(baseForward, baseModel.tokenizer, heldOutLabeled, labels, { maxTokens: 96, words: labelWords });
await baseForward.release();
const zeroShot = {
  accuracy: zeroShotRun.accuracy,
  balanced: balancedAccuracy(
    zeroShotRun.predicted,
    heldOutLabeled.map((x) => x.label),
  ),
};
const pct = (x: number | null | undefined) => (x == null ? "-" : fmt(100 * x, 1));
const meanOf = (rs: readonly RoundRecord[], f: (r: NonNullable<RoundRecord["clients"]>) => number | null) => {
  const xs = rs.flatMap((r) => (r.clients && f(r.clients) !== null ? [f(r.clients)!] : []));
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
};
const summarize = ([name, r]: [string, (typeof results)[string]]) => {
  const trained = r.rounds.filter((x) => x.round > 0);
  return {
    name,
    method: r.label,
    ownBaseline: r.ownBaseline,
    upBytes: meanOf(trained, (c) => c.upload_bytes),
    downBytes: meanOf(trained, (c) => c.download_bytes),
    rows: r.rowsPerClientRound,
    apiRequests: meanOf(trained, (c) => c.api_requests ?? null),
    cpuSeconds: meanOf(trained, (c) => c.cpu_seconds),
    start: r.rounds[0]?.validation_accuracy ?? null,
    final: trained.at(-1)?.validation_accuracy ?? null,
    best: Math.max(...trained.map((x) => x.validation_accuracy ?? -1)),
    perRound: r.rounds.map((x) => x.validation_accuracy),
    balancedPerRound: r.rounds.map((x) => x.validation_balanced_accuracy ?? null),
    lossPerRound: r.rounds.map((x) => x.validation_loss),
  };
};
const costCells = (r: ReturnType<typeof summarize>) => [
  r.upBytes === null ? "-" : fmt(r.upBytes),
  r.downBytes === null ? "-" : fmt(r.downBytes),
  r.rows ? fmt(r.rows) : "-",
  r.apiRequests === null ? "-" : fmt(r.apiRequests, 1),
  r.cpuSeconds === null ? "-" : fmt(r.cpuSeconds, 1),
];
const costHeaders = ["up B/client/round", "down B/client/round", "rows scored/client/round", "API requests", "CPU s/client/round"];
const rows = spamRuns.map(summarize);
if (rows.length) {
  console.log(
    `\nSpamAssassin spam/ham on ${base.model}, ${base.records} records iid over ${base.clients} clients, ${ROUNDS} rounds; held-out ` +
      `${heldOut.length} mails (majority class ${pct(majority)} %).`,
  );
  console.log(
    `Zero-shot: the base model with no prompt scoring the label words ${JSON.stringify(labelWords)}: accuracy ` +
      `${pct(zeroShot.accuracy)} %, balanced ${pct(zeroShot.balanced)} %; LoRA, which trains the label names, starts from its own round 0.`,
  );
  const zeroOf = (r: (typeof rows)[number]) => (r.ownBaseline ? r.start : zeroShot.accuracy);
  printTable(
    ["method", ...costHeaders, "round 0 acc %", "final acc %", "best acc %", "final - zero-shot (points)", "final balanced %"],
    rows.map((r) => [
      r.method,
      ...costCells(r),
      pct(r.start),
      pct(r.final),
      pct(r.best),
      r.final === null || zeroOf(r) === null ? "-" : fmt(100 * (r.final - zeroOf(r)!), 1),
      pct(r.balancedPerRound.at(-1)),
    ]),
  );
  console.log("\nbalanced accuracy % (mean per-label recall; 50 for any constant answer) after each round");
  printTable(
    ["round", ...rows.map((r) => r.method)],
    Array.from({ length: ROUNDS + 1 }, (_, i) => [i, ...rows.map((r) => pct(r.balancedPerRound[i]))]),
  );
  console.log("\naccuracy % after each round (round 0: the starting version)");
  printTable(
    ["round", ...rows.map((r) => r.method)],
    Array.from({ length: ROUNDS + 1 }, (_, i) => [i, ...rows.map((r) => pct(r.perRound[i]))]),
  );
}
const generation = genRuns.map(summarize);
if (generation.length) {
  console.log(
    `\nCMUdict grapheme-to-phoneme (generation), ${g2p.records} records iid over ${base.clients} clients, ${ROUNDS} rounds: ` +
      `held-out completion loss (nats per token); round 0 is the base model`,
  );
  printTable(
    ["method", ...costHeaders, "round 0 loss", "final loss", "final - zero-shot"],
    generation.map((r) => [
      r.method,
      ...costCells(r),
      fmt(r.lossPerRound[0]!, 4),
      fmt(r.lossPerRound.at(-1)!, 4),
      fmt(r.lossPerRound.at(-1)! - r.lossPerRound[0]!, 4),
    ]),
  );
}
const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
writeFileSync(
  new URL("./results/blackbox.svg", import.meta.url),
  linePlotSvg(
    rows.map((r, i) => ({
      name: r.method,
      points: r.perRound.flatMap((a, round) => (a === null ? [] : [[round, 100 * a] as const])),
      color: colors[i % colors.length]!,
    })),
    {
      title: "Held-out accuracy on SpamAssassin, per round (round 0: the starting version)",
      xLabel: "round",
      yLabel: "accuracy %",
      integerX: true,
    },
  ),
);
const path = await writeResults("blackbox", {
  quick,
  rounds: ROUNDS,
  majorityClass: majority,
  labelWords,
  zeroShot,
  heldOut: heldOut.length,
  runs: results,
  summary: rows,
  generation,
});
console.log(`\nwrote ${path} and bench/results/blackbox.svg; runs in ${out}`);
