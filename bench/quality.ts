// The learning-quality report (issue 17): for each task and partition (bench/lib/quality-rows.ts), over
// seeds, on the clean splits of cli/task-splits.ts:
// - zero-shot: the base model's raw answer (the most probable label words), and calibrated: a threshold on
//   the label words' score difference fitted on the run's training records only;
// - local-only: each client trains alone on its partition with the same local budget (mean over clients,
//   and their spread);
// - centralized: every partition pooled in one client, seeing as many examples a round as the federation;
// - federated: each row a real federation (`fedflare run`: client workers and the aggregator Durable Object
//   in workerd).
// Every run is scored on the validation split after each round and, once, its last version on the test
// split: the table reports the last round's test score, fixed in advance, never the best round. Rounds to
// 95%: the first round whose validation score reaches 95% of the last round's gain over round 0.
// Resumable: a run whose folder under --out holds the same config and its test score is read, not rerun;
// bench/results/quality.json is written as each row finishes, so a stopped report keeps its finished rows.
// The robust preset is the robustness report (bench/lib/robust-rows.ts), the hetero preset the heterogeneous
// ranks and compression report (bench/lib/hetero-rows.ts).
// Run: node bench/quality.ts [--preset quick|full|robust|hetero] [--seeds N] [--tasks spam,g2p,sotu] [--partitions iid,...]
//   [--only row,...] [--out DIR]
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { benchArgs } from "./lib/args.ts";
import { run } from "../cli/commands/run.ts";
import { dirSource } from "../cli/model-dir.ts";
import { parseRunConfig, type RunConfig } from "../cli/run-config.ts";
import { runData } from "../cli/run-data.ts";
import { type RoundRecord, type TestRecord, testRecord } from "../cli/run/report.ts";
import { tokenizeExample } from "../src/data/examples.ts";
import { accuracy, balancedAccuracy } from "../src/data/metrics.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { loadModel } from "../src/engine/model-files.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { heldOutLoss, labeledPrompts, labelScores, wordIds } from "../src/engine/train/evaluate.ts";
import { greedyScores, greedyTask } from "../src/fl/methods/shared/held-out.ts";
import type { Scored } from "../src/fl/methods/method.ts";
import { linePlotSvg } from "../src/report/line-plot.ts";
import { mean, qualityTable, type QualitySummary, std } from "./lib/quality-table.ts";
import { type RuleCounts, ruleCounts } from "./lib/robust-counts.ts";
import { type Preset, type QualityTask, qualityTasks, SPAM_LABEL_WORDS } from "./lib/quality-rows.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({
  options: {
    preset: { type: "string", default: "quick" },
    seeds: { type: "string", default: "3" },
    only: { type: "string" },
    tasks: { type: "string" },
    partitions: { type: "string" },
    out: { type: "string", default: "scratch/quality" },
  },
});
if (!["quick", "full", "robust", "hetero"].includes(values.preset))
  throw new Error(`--preset is quick, full, robust or hetero, not "${values.preset}"`);
const preset = values.preset as Preset;
const SEEDS = Array.from({ length: Number(values.seeds) }, (_, i) => i);
const only = values.only?.split(",");
/** The preset's tasks, or those --tasks names. */
const presetTasks = qualityTasks(preset);
const tasks = presetTasks.filter((t) => !values.tasks || values.tasks.split(",").includes(t.name));
const log = (s: string) => process.stderr.write(`${s}\n`);

/** One run's scores: the validation metric after each round (round 0 first) and the last version's test scores. */
interface RunScores {
  validation: number[];
  /** The validation loss after each round (the spam task's validation metric is its accuracy). */
  validationLoss: number[];
  test: TestRecord;
  /** A federated run's bytes a client sent and fetched a round, the mean over its rounds; null without them. */
  bytes: { up: number; down: number } | null;
  /** A robust run's rule: the attackers' and the honest clients' updates it kept or clipped (null without a rule). */
  rule: RuleCounts | null;
}

/** The metric a task is reported by: accuracy (higher is better) or the completion loss (lower is better). */
const metricOf = (t: QualityTask) => (t.name === "spam" ? "accuracy" : "loss");
const metricValue = (t: QualityTask, s: { accuracy: number | null; loss: number }) => (metricOf(t) === "accuracy" ? s.accuracy! : s.loss);

/** A finished run of the same config and seed under another row of the same task and partition, or null. */
function finishedTwin(dir: string, configText: string): string | null {
  const rows = dirname(dirname(dir));
  if (!existsSync(rows)) return null;
  for (const row of readdirSync(rows)) {
    const other = join(rows, row, basename(dir));
    if (other === dir || !existsSync(join(other, "test.json"))) continue;
    if (readFileSync(join(other, "config.json"), "utf8") === configText) return other;
  }
  return null;
}

/** Runs (or reads back) one federation, baseline or not, in `dir`. */
async function runOnce(config: RunConfig, dir: string, task: QualityTask): Promise<RunScores> {
  const configText = `${JSON.stringify(config, null, 2)}\n`;
  const done = existsSync(join(dir, "test.json")) && readFileSync(join(dir, "config.json"), "utf8") === configText;
  const same = done ? null : finishedTwin(dir, configText);
  if (same) {
    // A row of the same config (the tuning run at the chosen rate, say) already ran this seed: its run is this one.
    rmSync(dir, { recursive: true, force: true });
    cpSync(same, dir, { recursive: true });
    console.log(`== ${dir}: the same config as ${same}, its run reused`);
  } else if (!done) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const file = `${dir}.config.json`;
    writeFileSync(file, JSON.stringify(config));
    await run(["--config", file, "--out", dir]);
  }
  const rounds = readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as RoundRecord);
  const costs = rounds.flatMap((r) => (r.clients ? [r.clients] : []));
  return {
    validation: rounds.map((r) => metricValue(task, { accuracy: r.validation_accuracy ?? null, loss: r.validation_loss })),
    validationLoss: rounds.map((r) => r.validation_loss),
    test: JSON.parse(readFileSync(join(dir, "test.json"), "utf8")) as TestRecord,
    bytes: costs.length ? { up: mean(costs.map((c) => c.upload_bytes)), down: mean(costs.map((c) => c.download_bytes)) } : null,
    rule: ruleCounts(config, rounds),
  };
}

/** A run's test scores as a row keeps them per seed. */
function seedScores(task: QualityTask, t: TestRecord): Omit<Row["seeds"][number], "seed"> {
  return {
    test: metricValue(task, t),
    loss: t.loss,
    balanced: t.balanced,
    interval: t.accuracy_interval,
    ...(t.generated ? { generated: t.generated } : {}),
  };
}

interface ZeroShot {
  raw: TestRecord;
  names: TestRecord | null;
  calibrated: TestRecord | null;
}

/**
 * The base model's test scores for each seed's config: raw by the label words and by the label names (the
 * test split is every seed's, so these are scored once), and (classification) calibrated by a threshold on
 * the words' score difference fitted on each seed's own training records.
 */
async function zeroShot(configs: readonly RunConfig[]): Promise<ZeroShot[]> {
  const first = configs[0]!;
  const data = runData(first);
  const model = await loadModel(dirSource(first.model));
  const forward = await ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, {
    kind: "forward",
    quant: first.quant,
    nll: true,
  });
  try {
    const eos = model.config.eosTokenIds[0] ?? 0;
    const maxTokens = first.local.maxTokens;
    const tokens = data.test.map((e) => tokenizeExample(e, model.tokenizer, eos, maxTokens));
    const { loss } = await heldOutLoss(forward, tokens);
    const record = (s: Omit<Scored, "loss">) => testRecord(0, tokens.length, { loss, ...s });
    if (!data.labels) {
      // An exact-match task: the base model's greedy answers, as the runs' test scoring generates them.
      const generated =
        data.metric === "exact_match"
          ? await greedyScores(
              await ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, { kind: "step", quant: first.quant }),
              model,
              maxTokens,
              greedyTask(model.tokenizer, data.test, data.partitions.flat()),
            )
          : undefined;
      const raw = record({ accuracy: null, balanced: null, ...(generated ? { generated } : {}) });
      return configs.map(() => ({ raw, names: null, calibrated: null }));
    }
    const labels = data.labels;
    if (labels.join() !== "spam,ham") throw new Error(`the label words ${SPAM_LABEL_WORDS} are spam's and ham's, not ${labels}'s`);
    const margins = async (examples: typeof data.test, words: readonly string[] = SPAM_LABEL_WORDS) => {
      const items = labeledPrompts(examples);
      const scores = await labelScores(
        forward,
        items.map((x) => model.tokenizer.encode(x.prompt)),
        wordIds(model.tokenizer, words),
        { maxTokens },
      );
      return { gold: items.map((x) => x.label), margin: scores.map((s) => s[0]! - s[1]!) };
    };
    type Margins = Awaited<ReturnType<typeof margins>>;
    const at = (m: Margins, t: number) => m.margin.map((d) => (d > t ? labels[0]! : labels[1]!));
    const scoreAt = (m: Margins, t: number) =>
      record({ accuracy: accuracy(at(m, t), m.gold), balanced: balancedAccuracy(at(m, t), m.gold) });
    const test = await margins(data.test);
    const raw = scoreAt(test, 0);
    // The label names themselves, as a method without label words scores them.
    const names = scoreAt(await margins(data.test, labels), 0);
    const scored: ZeroShot[] = [];
    for (const config of configs) {
      const train = await margins(runData(config).partitions.flat());
      // The threshold with the best training accuracy (the first, on ties), among the midpoints of the sorted training margins.
      const sorted = [...train.margin].sort((a, b) => a - b);
      const candidates = [sorted[0]! - 1, ...sorted.slice(1).map((d, i) => (d + sorted[i]!) / 2)];
      const fits = candidates.map((t) => accuracy(at(train, t), train.gold));
      scored.push({ raw, names, calibrated: scoreAt(test, candidates[fits.indexOf(Math.max(...fits))]!) });
    }
    return scored;
  } finally {
    await forward.release();
  }
}

/** The first round whose score has 95% of the last round's gain over round 0 (null without a gain). */
function roundsTo95(curve: readonly number[], higherIsBetter: boolean): number | null {
  const sign = higherIsBetter ? 1 : -1;
  const gain = sign * (curve.at(-1)! - curve[0]!);
  if (!(gain > 0)) return null;
  return curve.findIndex((x) => sign * (x - curve[0]!) >= 0.95 * gain);
}

interface Row {
  task: string;
  partition: string;
  row: string;
  label: string;
  kind: "zero-shot" | "calibrated" | "local-only" | "centralized" | "federated";
  /** Per seed: the test score (local-only: the mean over clients) and its 95% interval where one applies. */
  seeds: {
    seed: number;
    test: number;
    /** The test completion loss (the metric itself where the task is scored by its loss). */
    loss: number;
    /** A federated run's last validation loss. */
    validationLoss?: number;
    balanced: number | null;
    interval: { low: number; high: number } | null;
    clientStd?: number;
    /** An exact-match task's greedy answers (local-only: the mean over clients). */
    generated?: Scored["generated"];
    /** A federation's bytes a client sent and fetched a round (runOnce). */
    bytes?: { up: number; down: number };
    /** A robust run's rule: the updates it kept or clipped, attackers' and honest (runOnce). */
    rule?: RuleCounts;
  }[];
  /** Per seed, validation after each round (round 0 first). */
  curves: number[][];
}

/**
 * Baselines first, in the order of the module's header, then each task's rows in the order its preset lists
 * them, whatever order they ran or were read back in (a stable sort keeps the rest as they are).
 */
const KINDS: Row["kind"][] = ["zero-shot", "calibrated", "local-only", "centralized", "federated"];
const presetRows = new Map<string, string[]>(presetTasks.map((t) => [t.name, Object.keys(t.rows)]));
function inPresetOrder(a: Summary, b: Summary): number {
  const position = (r: Summary) => presetRows.get(r.task)?.indexOf(r.row) ?? -1;
  return KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind) || position(a) - position(b);
}

const rows: Row[] = [];

type Summary = QualitySummary & { kind: Row["kind"]; seeds: Row["seeds"]; curves: number[][] };

function summarize(r: Row): Summary {
  const tests = r.seeds.map((s) => s.test);
  const balanced = r.seeds.map((s) => s.balanced);
  const higher = r.task === "spam";
  const curve = r.curves.length ? r.curves[0]!.map((_, k) => mean(r.curves.map((c) => c[k]!))) : null;
  return {
    task: r.task,
    partition: r.partition,
    row: r.row,
    label: r.label,
    kind: r.kind,
    metric: higher ? "accuracy" : "loss",
    mean: mean(tests),
    std: std(tests),
    testLoss: mean(r.seeds.map((s) => s.loss)),
    validationLoss: r.seeds.every((s) => s.validationLoss !== undefined) ? mean(r.seeds.map((s) => s.validationLoss!)) : null,
    balancedMean: balanced.every((b) => b !== null) ? mean(balanced as number[]) : null,
    intervalHalfWidth: r.seeds.every((s) => s.interval) ? mean(r.seeds.map((s) => (s.interval!.high - s.interval!.low) / 2)) : null,
    clientStd: r.seeds.every((s) => s.clientStd !== undefined) ? mean(r.seeds.map((s) => s.clientStd!)) : null,
    generated: r.seeds.every((s) => s.generated)
      ? {
          exactMatch: mean(r.seeds.map((s) => s.generated!.exactMatch)),
          exactMatchStd: std(r.seeds.map((s) => s.generated!.exactMatch)),
          errorRate: mean(r.seeds.map((s) => s.generated!.errorRate)),
        }
      : null,
    roundsTo95: curve && roundsTo95(curve, higher),
    bytes: r.seeds.every((s) => s.bytes)
      ? { up: mean(r.seeds.map((s) => s.bytes!.up)), down: mean(r.seeds.map((s) => s.bytes!.down)) }
      : null,
    seeds: r.seeds,
    curves: r.curves,
  };
}

const RESULTS = new URL("./results/quality.json", import.meta.url);

/**
 * Writes this run's rows so far over the same rows of earlier runs (--only reruns a few), the others kept;
 * called as each row finishes, so a stopped run keeps the rows it finished.
 */
type Written = { presets: Record<string, { seeds: number[]; tasks: unknown; rows: Summary[] }> };

/** The rows bench/results/quality.json holds for this preset. */
function writtenRows(): Summary[] {
  return existsSync(RESULTS) ? ((JSON.parse(readFileSync(RESULTS, "utf8")) as Written).presets[preset]?.rows ?? []) : [];
}

async function save(): Promise<string> {
  const presets = existsSync(RESULTS) ? (JSON.parse(readFileSync(RESULTS, "utf8")) as Written).presets : {};
  const key = (s: Summary) => `${s.task}/${s.partition}/${s.row}`;
  const done = rows.map(summarize);
  const replaced = new Set(done.map(key));
  const kept = (presets[preset]?.rows ?? []).filter((s) => !replaced.has(key(s)));
  return writeResults("quality", {
    presets: { ...presets, [preset]: { seeds: SEEDS, tasks: presetTasks, rows: [...kept, ...done].sort(inPresetOrder) } },
  });
}
for (const task of tasks) {
  const higher = metricOf(task) === "accuracy";
  for (const [partition, partitioning] of Object.entries(task.partitions)) {
    if (values.partitions && !values.partitions.split(",").includes(partition)) continue;
    const configOf = (extra: Record<string, unknown>, seed: number) =>
      parseRunConfig({ ...task.base, ...partitioning, ...extra, seed }, `${task.name}/${partition}`);
    const folder = (...parts: (string | number)[]) => join(values.out, preset, task.name, partition, ...parts.map(String));
    const add = async (row: Omit<Row, "task" | "partition">) => {
      rows.push({ task: task.name, partition, ...row });
      await save();
    };
    const wanted = (name: string) => !only || only.includes(name);
    const first = Object.values(task.rows)[0]!;

    if (wanted("zero-shot")) {
      const results = (await zeroShot(SEEDS.map((seed) => configOf(first.config, seed)))).map((r, i) => ({ seed: SEEDS[i]!, ...r }));
      const seedRow = (t: TestRecord, seed: number) => ({ seed, ...seedScores(task, t) });
      const zeroRows: [string, string, Row["kind"], (r: ZeroShot) => TestRecord | null][] = [
        [
          "zero-shot",
          task.name === "spam" ? `zero-shot, label words ${SPAM_LABEL_WORDS.join("/")}` : "zero-shot (the base model)",
          "zero-shot",
          (r) => r.raw,
        ],
        ["zero-shot-names", "zero-shot, label names", "zero-shot", (r) => r.names],
        ["zero-shot-calibrated", "zero-shot, label words, threshold fitted on training records", "calibrated", (r) => r.calibrated],
      ];
      for (const [row, label, kind, pick] of zeroRows)
        if (pick(results[0]!)) await add({ row, label, kind, seeds: results.map((r) => seedRow(pick(r)!, r.seed)), curves: [] });
    }

    /** A config's run per seed in folder `name`: each seed's test score and validation curve. */
    const perSeed = async (name: string, config: Record<string, unknown>): Promise<Pick<Row, "seeds" | "curves">> => {
      const scored: Pick<Row, "seeds" | "curves"> = { seeds: [], curves: [] };
      for (const seed of SEEDS) {
        log(`\n== ${task.name} / ${partition} / ${name} / seed ${seed}`);
        const r = await runOnce(configOf(config, seed), folder(name, `seed-${seed}`), task);
        scored.seeds.push({
          seed,
          ...seedScores(task, r.test),
          validationLoss: r.validationLoss.at(-1)!,
          ...(r.bytes ? { bytes: r.bytes } : {}),
          ...(r.rule ? { rule: r.rule } : {}),
        });
        scored.curves.push(r.validation);
      }
      return scored;
    };
    for (const [name, spec] of Object.entries(task.rows))
      if (wanted(name)) await add({ row: name, label: spec.label, kind: "federated", ...(await perSeed(name, spec.config)) });

    // The baselines train as the first row does (its method, strategy and local budget).
    if (wanted("centralized"))
      await add({
        row: "centralized",
        label: `centralized (${first.label}, pooled)`,
        kind: "centralized",
        ...(await perSeed("centralized", { ...first.config, baseline: { type: "centralized" } })),
      });
    if (wanted("local-only")) {
      const seeds: Row["seeds"] = [];
      const curves: number[][] = [];
      for (const seed of SEEDS) {
        const clients = configOf(first.config, seed).clients;
        const each: RunScores[] = [];
        for (let client = 0; client < clients; client++) {
          log(`\n== ${task.name} / ${partition} / local-only client ${client} / seed ${seed}`);
          const config = configOf({ ...first.config, baseline: { type: "local-only", client } }, seed);
          each.push(await runOnce(config, folder("local-only", `seed-${seed}`, `client-${client}`), task));
        }
        const tests = each.map((r) => metricValue(task, r.test));
        const balanced = each.map((r) => r.test.balanced);
        const generated = each.map((r) => r.test.generated);
        seeds.push({
          seed,
          test: mean(tests),
          loss: mean(each.map((r) => r.test.loss)),
          balanced: balanced.every((b) => b !== null) ? mean(balanced as number[]) : null,
          interval: null,
          clientStd: std(tests),
          ...(generated.every((g) => g !== undefined)
            ? { generated: { exactMatch: mean(generated.map((g) => g!.exactMatch)), errorRate: mean(generated.map((g) => g!.errorRate)) } }
            : {}),
        });
        curves.push(each[0]!.validation.map((_, i) => mean(each.map((r) => r.validation[i]!))));
      }
      await add({ row: "local-only", label: `local-only (${first.label}, each client alone)`, kind: "local-only", seeds, curves });
    }
    plot(task, partition, higher);
  }
}

/** Metric per round per row of one task x partition, mean over seeds with a ± std band. */
function plot(task: QualityTask, partition: string, higher: boolean): void {
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const scale = higher ? 100 : 1;
  // Every row the results file holds for this task and partition, earlier runs' included.
  const series = writtenRows()
    .filter((r) => r.task === task.name && r.partition === partition && r.curves.length > 0)
    .map((r, i) => {
      const rounds = r.curves[0]!.map((_, k) => r.curves.map((c) => c[k]! * scale));
      return {
        name: r.label,
        color: colors[i % colors.length]!,
        points: rounds.map((xs, k) => [k, mean(xs)] as const),
        band: rounds.map((xs) => [mean(xs) - std(xs), mean(xs) + std(xs)] as const),
      };
    });
  if (series.length === 0) return;
  writeFileSync(
    new URL(`./results/quality-${preset}-${task.name}-${partition}.svg`, import.meta.url),
    linePlotSvg(series, {
      title: `${task.name}, ${partition}: validation ${higher ? "accuracy %" : "loss"} per round (mean ± std over seeds)`,
      xLabel: "round",
      yLabel: higher ? "accuracy %" : "loss (nats per token)",
      integerX: true,
    }),
  );
}

const summary = rows.map(summarize).sort(inPresetOrder);
for (const task of tasks)
  for (const partition of Object.keys(task.partitions)) {
    const part = summary.filter((s) => s.task === task.name && s.partition === partition);
    if (part.length === 0) continue;
    const what = metricOf(task) === "accuracy" ? "accuracy %" : "loss";
    console.log(`\n${task.name}, ${partition}: test ${what}, mean ± std over ${SEEDS.length} seeds`);
    console.log(qualityTable(part));
  }
console.log(`\nwrote ${await save()} and bench/results/quality-${preset}-*.svg`);
