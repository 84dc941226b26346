// `fedflare run` end to end on a tiny model: a local federation in workerd, interrupted with Ctrl-C
// (SIGINT) after its first round and continued with --resume, without redoing acknowledged work.
import assert from "node:assert";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadPeftAdapter } from "../../src/engine/lora/peft.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { parseRunConfig } from "../../cli/run-config.ts";
import { runData } from "../../cli/run-data.ts";
import type { RoundRecord, TestRecord } from "../../cli/run/report.ts";
import { ruleCounts } from "../../bench/lib/robust-counts.ts";
import type { RobustSummary } from "../../durable-objects/aggregator/buffered-updates.ts";
import { exactMatch, unitErrorRate } from "../../src/data/metrics.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { loraPairs } from "../../src/engine/lora/peft.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import type { FedKSeedConfig } from "../../src/fl/methods/fedkseed/config.ts";
import type { DiscreteConfig } from "../../src/fl/methods/discrete/config.ts";
import { bestPrompt, distributionsOf } from "../../src/fl/methods/discrete/round.ts";
import { bbtGlobalOf, softPromptOf } from "../../src/fl/methods/fedbpt/search.ts";
import { zoGlobal, zoInitial } from "../../src/fl/methods/fedkseed/zo-update.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { privacySpent } from "../../src/privacy/rdp.ts";
import {
  referenceCompletionLoss,
  referenceGreedy,
  referenceLabelAccuracy,
  referenceWordCrossEntropy,
} from "../fixtures/reference-accuracy.ts";
import { referenceLogprobs } from "../reference/llama-f64.ts";
import { runCli } from "./run-cli.ts";

const root = tempDir("cli-run");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ heads: 4, kvHeads: 2 });
const modelDir = writeHfModel(join(root, "model"), config, tinyWeights(config, 5));
const runConfig = join(root, "run.json");
const g2pRun = {
  model: modelDir,
  task: "g2p",
  records: 160,
  clients: 2,
  rounds: 3,
  method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"] },
  quant: "f32",
  local: { steps: 24, batchSize: 8, lr: 1e-2, maxTokens: 32 },
  evalExamples: 16,
  testExamples: 12,
  federatedEvaluation: true,
};
writeFileSync(runConfig, JSON.stringify(g2pRun));

interface Record_ {
  round: number;
  status: string;
  version: number;
  uploads: number;
  clients?: { upload_bytes: number; download_bytes: number };
  federated_loss?: number;
  validation_loss: number;
}
const records = (dir: string) =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record_);

/** A spam run of the tiny model: 80 records over 2 clients, 2 rounds, f32, 6 validation and 12 test mails. */
const spamRun = (method: Record<string, unknown>, local: Record<string, number>) => ({
  model: modelDir,
  task: "spam",
  records: 80,
  clients: 2,
  rounds: 2,
  method,
  quant: "f32",
  local,
  evalExamples: 6,
  testExamples: 12,
});

/** `fedflare run` on `json`, written as <name>.json, into <name>-run. */
async function runWith(name: string, json: object) {
  const file = join(root, `${name}.json`);
  writeFileSync(file, JSON.stringify(json));
  const out = join(root, `${name}-run`);
  return { r: await runCli(["run", "--config", file, "--out", out]), out };
}

describe("fedflare run", () => {
  it("runs a local federation, stops cleanly on SIGINT, and --resume finishes it without redoing rounds", async () => {
    const out = join(root, "run");
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL("../../bin/fedflare.js", import.meta.url)), "run", "--config", runConfig, "--out", out],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((res) => child.on("exit", res));
    // Interrupt while round 2 is under way.
    for (let i = 0; i < 1200 && !/round 2\/3 /.test(stderr); i++) await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/continue with {2}npx fedflare run --resume/);
    const before = records(out);
    expect(before.map((r) => r.round)).toEqual([0, 1]);

    const resumed = await runCli(["run", "--resume", out]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const all = records(out);
    expect(all.map((r) => r.round)).toEqual([0, 1, 2, 3]);
    expect(all.slice(0, 2)).toEqual(before);
    expect(all.map((r) => r.version)).toEqual([0, 1, 2, 3]);
    expect(all.at(-1)!.validation_loss).toBeLessThan(all[0]!.validation_loss);
    expect(resumed.stdout).toMatch(/round +status +uploads/);
    for (const f of ["config.json", "plot.svg", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(readFileSync(join(out, "plot.svg"), "utf8")).toMatch(/^<svg/);
    const adapter = await loadPeftAdapter(dirSource(join(out, "adapter")), config);
    expect(adapter.config).toMatchObject({ r: 4, alpha: 8 });
    const scored = await runCli(["score", "--model", modelDir, "--adapter", join(out, "adapter"), "--text", "Pronounce fox: F AA1 K S"]);
    expect(scored.code, scored.stderr).toBe(0);

    // Recomputed in float64 on the run's own examples: round 0 is the base model (B = 0), the last
    // version the base with the final adapter (scaling alpha / r = 2), and the test split's greedy
    // pronunciations are the reference's, scored by exact match and phoneme error rate.
    const data = runData(parseRunConfig(g2pRun, "g2p"));
    const base = await loadModel(dirSource(modelDir));
    const final = decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), "final").tensors;
    const lora = loraPairs(final, 4, 2);
    expect(all[0]!.validation_loss).toBeCloseTo(referenceCompletionLoss(base, data.validation, 32), 5);
    expect(all[3]!.validation_loss).toBeCloseTo(referenceCompletionLoss(base, data.validation, 32, { lora }), 5);
    // Federated evaluation: each of the two client workers scored every other validation example, and the
    // aggregator took the example-weighted mean of their two losses.
    const shares = [0, 1].map((i) => data.validation.filter((_, j) => j % 2 === i));
    const federated = (options: { lora?: typeof lora }) =>
      shares.reduce((s, share) => s + share.length * referenceCompletionLoss(base, share, 32, options), 0) / data.validation.length;
    expect(all[0]!.federated_loss).toBeCloseTo(federated({}), 5);
    expect(all[3]!.federated_loss).toBeCloseTo(federated({ lora }), 5);
    expect(all[3]!.federated_loss).not.toBeCloseTo(all[3]!.validation_loss, 6);
    const test = JSON.parse(readFileSync(join(out, "test.json"), "utf8")) as TestRecord;
    const pairs = data.test.map((e) => ("prompt" in e ? e : assert.fail("g2p examples are pairs")));
    // At most twice the longest training answer's tokens, within the window.
    const budget =
      2 *
      Math.max(
        ...data.partitions.flat().map((e) => ("prompt" in e ? base.tokenizer.encode(e.completion, { addSpecialTokens: false }).length : 0)),
      );
    const greedy = referenceGreedy(
      base,
      pairs.map((e) => e.prompt),
      (n) => Math.min(budget, 32 - n),
      lora,
    );
    const gold = pairs.map((e) => e.completion);
    expect(test).toMatchObject({
      version: 3,
      examples: 12,
      loss: expect.closeTo(referenceCompletionLoss(base, data.test, 32, { lora }), 5),
    });
    expect(test.generated).toEqual({ exactMatch: exactMatch(greedy, gold), errorRate: unitErrorRate(greedy, gold) });
    expect(test.exact_match_interval!.high).toBeGreaterThan(test.generated!.exactMatch);
    expect(resumed.stdout).toContain(`error rate ${(100 * test.generated!.errorRate).toFixed(1)} % of the answers' units`);
  }, 300_000);

  it("runs offsite-tuning on spam's label words: emulated clients, each version plugged in and scored by the words", async () => {
    const deep = tinyConfig({ heads: 4, kvHeads: 2, layers: 4 });
    const deepDir = writeHfModel(join(root, "model-4l"), deep, tinyWeights(deep, 6));
    const json = {
      model: deepDir,
      task: "spam",
      records: 80,
      clients: 2,
      rounds: 2,
      // Words other than the labels, one token each in the tiny vocabulary.
      method: { type: "offsite", bottom: 1, top: 1, middle: 0, labels: ["spam", "ham"], labelWords: ["the", "and"] },
      // Central DP: both clients sampled each round (q = 1), updates clipped to 1, noise z = 0.5.
      privacy: { clip: 1, noiseMultiplier: 0.5 },
      quant: "f32",
      local: { steps: 2, batchSize: 4, lr: 1e-3, maxTokens: 48 },
      evalExamples: 6,
      testExamples: 40,
    };
    const { r, out } = await runWith("offsite", json);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/adapter layers \[0,3\], clients run the emulator's layers \[0,3\]/);
    const all = records(out) as (Record_ & { validation_accuracy: number; train_loss: number })[];
    expect(all.map((x) => x.version)).toEqual([0, 1, 2]);
    // Six validation mails: accuracy in sixths.
    for (const x of all) {
      expect(x.validation_accuracy).toBeGreaterThanOrEqual(0);
      expect(x.validation_accuracy).toBeLessThanOrEqual(1);
      expect(Math.abs(x.validation_accuracy * 6 - Math.round(x.validation_accuracy * 6))).toBeLessThan(1e-9);
    }
    expect(all[2]!.validation_loss).not.toBe(all[0]!.validation_loss);
    // The clients trained the words' two-way cross-entropy (near ln 2 here), not the labels' completions.
    for (const x of all.slice(1)) expect(x.train_loss).toBeLessThan(1.5);
    expect(r.stdout).toMatch(/validation accuracy % +ε/);
    // ε after each round as the accountant gives it at δ = 1e-5; none before the first.
    const spent = all as (Record_ & { epsilon?: number })[];
    expect(spent[0]!.epsilon).toBeUndefined();
    for (const k of [1, 2])
      expect(spent[k]!.epsilon).toBeCloseTo(privacySpent({ sampleRate: 1, noiseMultiplier: 0.5, steps: k }, 1e-5).epsilon, 10);
    expect(r.stderr).toContain(`, ε ${spent[2]!.epsilon!.toFixed(3)} (`);
    // The last version on 40 test mails, with the accuracy's Wilson interval (z = 1.96) around it.
    const test = JSON.parse(readFileSync(join(out, "test.json"), "utf8")) as TestRecord;
    expect(test).toMatchObject({ version: 2, examples: 40 });
    const k = Math.round(test.accuracy! * 40);
    expect(Math.abs(test.accuracy! * 40 - k)).toBeLessThan(1e-9);
    const p = k / 40;
    const half = (1.96 / (1 + 1.96 ** 2 / 40)) * Math.sqrt((p * (1 - p)) / 40 + 1.96 ** 2 / 6400);
    const centre = (p + 1.96 ** 2 / 80) / (1 + 1.96 ** 2 / 40);
    expect(test.accuracy_interval!.low).toBeCloseTo(Math.max(0, centre - half), 3);
    expect(test.accuracy_interval!.high).toBeCloseTo(Math.min(1, centre + half), 3);
    expect(r.stdout).toContain(
      `test (40 examples, version 2): loss ${test.loss.toFixed(4)}, accuracy ${(100 * test.accuracy!).toFixed(1)} %`,
    );
    // Recomputed in float64: round 0 is the base model (the owner's adapter layers as they are), the last
    // version its adapter layers plugged into the full model, scored by the words; the loss their cross-entropy.
    const data = runData(parseRunConfig(json, "offsite"));
    const base = await loadModel(dirSource(deepDir));
    const layers = decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), "final").tensors;
    const full = { ...base, weights: new Map([...base.weights, ...layers]) };
    const { labels, labelWords } = json.method;
    const scoredOn = (model: typeof base, examples: typeof data.test) => {
      const s = referenceLabelAccuracy(model, examples, labels, labelWords, 48);
      return { ...s, ce: referenceWordCrossEntropy(s, examples, labels) };
    };
    const [zero, moved, last] = [scoredOn(base, data.validation), scoredOn(full, data.validation), scoredOn(full, data.test)];
    expect(all[0]!.validation_accuracy).toBeCloseTo(zero.accuracy, 9);
    expect(all[0]!.validation_loss).toBeCloseTo(zero.ce, 5);
    expect(all[2]!.validation_accuracy).toBeCloseTo(moved.accuracy, 9);
    expect(all[2]!.validation_loss).toBeCloseTo(moved.ce, 5);
    expect(test.accuracy).toBeCloseTo(last.accuracy, 9);
    expect(test.loss).toBeCloseTo(last.ce, 5);
    expect(Math.min(...zero.margins, ...moved.margins, ...last.margins)).toBeGreaterThan(1e-4);
    expect(JSON.parse(readFileSync(join(out, "adapter", "adapter_config.json"), "utf8"))).toMatchObject({
      method: "offsite",
      adapter_layers: [0, 3],
      emulator_layers: [0, 3],
    });
    const plugged = await runCli([
      "offsite",
      "plug-in",
      "--model",
      deepDir,
      "--adapter",
      join(out, "adapter"),
      "--out",
      join(root, "offsite-plugged"),
    ]);
    expect(plugged.code, plugged.stderr).toBe(0);
  }, 300_000);

  it("runs FedKSeed on spam's label words: clients upload per-seed scalars, each version rebuilt from them and scored", async () => {
    // Label words other than the labels: the scores must be the words', the gold the labels.
    const method = {
      type: "fedkseed",
      k: 128,
      labels: ["spam", "ham"],
      labelWords: ["workers", "quick"],
      trains: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"] },
    };
    const json = spamRun(method, { steps: 4, batchSize: 4, lr: 0.05, maxTokens: 48 });
    const { r, out } = await runWith("fedkseed", json);
    expect(r.code, r.stderr).toBe(0);
    const all = records(out) as (Record_ & { validation_accuracy: number })[];
    expect(all.map((x) => x.version)).toEqual([0, 1, 2]);
    // The LoRA pairs start at B = 0 (the base model) and move with the seeds' scalars.
    expect(all[2]!.validation_loss).not.toBe(all[0]!.validation_loss);
    expect(JSON.parse(readFileSync(join(out, "adapter", "adapter_config.json"), "utf8"))).toMatchObject({ method: "fedkseed", k: 128 });

    // Recomputed in float64 on the run's own validation and test examples: round 0 (B = 0, the base
    // model's zero-shot) and the last version, rebuilt from its seed sums, on test.
    const run = parseRunConfig(json, "fedkseed");
    const data = runData(run);
    const base = await loadModel(dirSource(modelDir));
    const zero = referenceLabelAccuracy(base, data.validation, method.labels, method.labelWords, 48);
    expect(all[0]!.validation_accuracy).toBeCloseTo(zero.accuracy, 9);
    const sums = decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), "final").tensors;
    const cumulative = new Map([...sums.get("seed_sums")!].flatMap((c, j) => (c === 0 ? [] : [[j, c] as const])));
    expect(cumulative.size).toBeGreaterThan(0);
    const zo = { method: run.method as FedKSeedConfig, federationSeed: run.seed, local: run.local };
    const params = zoGlobal(zoInitial(config, base.weights, zo.method.trains, run.seed), zo, cumulative);
    const last = referenceLabelAccuracy(base, data.test, method.labels, method.labelWords, 48, { lora: loraPairs(params, 2, 2) });
    const test = JSON.parse(readFileSync(join(out, "test.json"), "utf8")) as TestRecord;
    expect(test).toMatchObject({ version: 2, examples: 12 });
    expect(test.accuracy).toBeCloseTo(last.accuracy, 9);
    // The words, not the labels, decide: the base model answers both labels by its words, differently by its labels'.
    expect(new Set(zero.predicted).size).toBe(2);
    expect(zero.predicted).not.toEqual(referenceLabelAccuracy(base, data.validation, method.labels, method.labels, 48).predicted);
    // The losses (the gold labels' completions) of round 0 and of the last version, which moved the model.
    const lossAt = (lora?: ReturnType<typeof loraPairs>) => referenceCompletionLoss(base, data.validation, 48, { lora });
    expect(all[0]!.validation_loss).toBeCloseTo(lossAt(), 5);
    expect(all[2]!.validation_loss).toBeCloseTo(lossAt(loraPairs(params, 2, 2)), 5);
    expect(Math.abs(lossAt(loraPairs(params, 2, 2)) - lossAt())).toBeGreaterThan(1e-3);
    // No near-tie that float32 could break the other way.
    expect(Math.min(...zero.margins, ...last.margins)).toBeGreaterThan(1e-4);
  }, 300_000);

  it("trains LoRA on spam's label words: each version scored by the words, its loss their cross-entropy", async () => {
    // Words other than the labels, one token each in the tiny vocabulary (" spam" and " ham" are four).
    const method = {
      type: "lora",
      r: 2,
      alpha: 4,
      targetModules: ["q_proj", "v_proj"],
      labels: ["spam", "ham"],
      labelWords: ["the", "and"],
    };
    const json = { ...spamRun(method, { steps: 6, batchSize: 4, lr: 0.05, maxTokens: 48 }), federatedEvaluation: true };
    const { r, out } = await runWith("lora-words", json);
    expect(r.code, r.stderr).toBe(0);
    const all = records(out) as (Record_ & { validation_accuracy: number; train_loss: number })[];
    expect(all.map((x) => x.version)).toEqual([0, 1, 2]);

    // Recomputed in float64: round 0 is the base model, the last version the base with the final adapter; the
    // loss is the mean over examples of -log softmax of the words' scores at the gold label.
    const data = runData(parseRunConfig(json, "lora-words"));
    const base = await loadModel(dirSource(modelDir));
    const final = decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), "final").tensors;
    const lora = loraPairs(final, 2, 2);
    const scoredOn = (examples: typeof data.test, options: { lora?: typeof lora } = {}) => {
      const s = referenceLabelAccuracy(base, examples, method.labels, method.labelWords, 48, options);
      return { ...s, ce: referenceWordCrossEntropy(s, examples, method.labels) };
    };
    const zero = scoredOn(data.validation);
    const moved = scoredOn(data.validation, { lora });
    expect(all[0]!.validation_accuracy).toBeCloseTo(zero.accuracy, 9);
    expect(all[0]!.validation_loss).toBeCloseTo(zero.ce, 5);
    expect(all[2]!.validation_accuracy).toBeCloseTo(moved.accuracy, 9);
    expect(all[2]!.validation_loss).toBeCloseTo(moved.ce, 5);
    expect(Math.abs(moved.ce - zero.ce)).toBeGreaterThan(1e-3);
    // The clients trained the words' two-way cross-entropy (near ln 2 here), not the labels' completions
    // (four tokens and EOS, each about ln 300 at first).
    for (const x of all.slice(1)) expect(x.train_loss).toBeLessThan(1.5);
    // The words, not the labels, decide.
    expect(zero.predicted).not.toEqual(referenceLabelAccuracy(base, data.validation, method.labels, method.labels, 48).predicted);
    // Federated evaluation: each client scored every other validation mail by the words, weighted by its count.
    const shares = [0, 1].map((i) => data.validation.filter((_, j) => j % 2 === i));
    const federated = shares.reduce((s, share) => s + share.length * scoredOn(share, { lora }).ce, 0) / data.validation.length;
    expect((all[2] as Record_).federated_loss).toBeCloseTo(federated, 5);
    const test = JSON.parse(readFileSync(join(out, "test.json"), "utf8")) as TestRecord;
    const last = scoredOn(data.test, { lora });
    expect(test).toMatchObject({ version: 2, examples: 12 });
    expect(test.accuracy).toBeCloseTo(last.accuracy, 9);
    expect(test.loss).toBeCloseTo(last.ce, 5);
    expect(Math.min(...zero.margins, ...moved.margins, ...last.margins)).toBeGreaterThan(1e-4);

    // A label word of more than one token is refused before round 1, naming it; so is a task without labels.
    const long = await runWith("lora-long-word", { ...json, method: { ...method, labelWords: ["the", "quick"] } });
    expect(long.r.code).not.toBe(0);
    expect(long.r.stderr).toMatch(/LoRA's label words are one token each in the model's vocabulary; " quick" is 5/);
    const other = await runWith("lora-other-labels", { ...json, method: { ...method, labels: ["pos", "neg"] } });
    expect(other.r.code).not.toBe(0);
    expect(other.r.stderr).toMatch(/method.labels \["pos","neg"\] lack the task's label "spam"/);
    const g2p = await runWith("lora-words-g2p", { ...g2pRun, method });
    expect(g2p.r.code).not.toBe(0);
    expect(g2p.r.stderr).toMatch(/method.labels trains LoRA on a classification task's label words, not g2p/);
  }, 300_000);

  it("runs FedBPT on spam: clients search the soft prompt's subspace, each version's prompt scored", async () => {
    const method = {
      type: "fedbpt",
      promptTokens: 2,
      dimension: 6,
      generations: 2,
      labels: ["spam", "ham"],
      labelWords: ["workers", "quick"],
    };
    const json = spamRun(method, { steps: 1, batchSize: 4, lr: 1, maxTokens: 48 });
    const { r, out } = await runWith("fedbpt", json);
    expect(r.code, r.stderr).toBe(0);
    const all = records(out) as (Record_ & { validation_accuracy: number })[];
    expect(all.map((x) => x.version)).toEqual([0, 1, 2]);
    // Version 0 is z = 0 (the prompt p0); the clients' search moves it.
    expect(all[2]!.validation_loss).not.toBe(all[0]!.validation_loss);
    expect(JSON.parse(readFileSync(join(out, "adapter", "adapter_config.json"), "utf8"))).toMatchObject({ method: "fedbpt", dimension: 6 });

    // Recomputed in float64: each version is the base model after the soft prompt p0 + A z (round 0: z = 0),
    // scored by the label words on validation and, for the last version, on test.
    const run = parseRunConfig(json, "fedbpt");
    const data = runData(run);
    const base = await loadModel(dirSource(modelDir));
    const promptOf = softPromptOf(config, base.weights, { promptTokens: 2, dimension: 6, seed: run.seed });
    const final = decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), "final").tensors;
    const z = bbtGlobalOf(final).mean;
    expect(z.some((x) => x !== 0)).toBe(true);
    const at = (examples: typeof data.test, prompt: Float32Array) =>
      referenceLabelAccuracy(base, examples, method.labels, method.labelWords, 48, { prefix: prompt });
    const zero = at(data.validation, promptOf(new Array(6).fill(0)));
    const last = at(data.test, promptOf(z));
    expect(all[0]!.validation_accuracy).toBeCloseTo(zero.accuracy, 9);
    expect(all[0]!.validation_loss).toBeCloseTo(
      referenceCompletionLoss(base, data.validation, 48, { prefix: promptOf(new Array(6).fill(0)) }),
      5,
    );
    expect(all[2]!.validation_loss).toBeCloseTo(referenceCompletionLoss(base, data.validation, 48, { prefix: promptOf(z) }), 5);
    const test = JSON.parse(readFileSync(join(out, "test.json"), "utf8")) as TestRecord;
    expect(test).toMatchObject({ version: 2, examples: 12 });
    expect(test.accuracy).toBeCloseTo(last.accuracy, 9);
    // No near-tie that float32 could break the other way.
    expect(Math.min(...zero.margins, ...last.margins)).toBeGreaterThan(1e-4);
  }, 300_000);

  it("runs discrete prompts on spam at the endpoint it starts: clients hold the tokenizer, each version's best prompt scored", async () => {
    const method = {
      type: "discrete",
      slots: 2,
      phrases: ["free", "money", "meeting", "thanks", "click"],
      population: 2,
      labels: ["spam", "ham"],
      labelWords: ["workers", "quick"],
    };
    const json = spamRun(method, { steps: 3, batchSize: 4, lr: 0.2, maxTokens: 48 });
    const { r, out } = await runWith("discrete", json);
    expect(r.code, r.stderr).toBe(0);
    type Cost = { upload_bytes: number; download_bytes: number; api_rows: number; api_requests: number; cpu_seconds: number | null };
    const all = records(out) as (Record_ & { validation_accuracy: number; validation_balanced_accuracy: number; clients?: Cost })[];
    expect(all.map((x) => x.version)).toEqual([0, 1, 2]);
    for (const x of all) expect(x.validation_balanced_accuracy).toEqual(expect.any(Number));
    // Each step: 2 prompts x 4 mails x 2 labels = 16 rows in one request; three steps a round.
    expect(all[1]!.clients).toMatchObject({ api_rows: 3 * 16, api_requests: 3 });
    // Up: the change of a 2 x 5 distribution (40 bytes of numbers and the safetensors header); down: version 0.
    expect(all[1]!.clients!.upload_bytes).toBeGreaterThan(40);
    expect(all[1]!.clients!.upload_bytes).toBeLessThan(600);
    expect(all[1]!.clients!.download_bytes).toBeGreaterThan(40);
    expect(r.stdout).toMatch(/the most probable prompt: "\w+ \w+"/);
    expect(JSON.parse(readFileSync(join(out, "adapter", "adapter_config.json"), "utf8"))).toMatchObject({
      method: "discrete",
      slots: 2,
      phrases: method.phrases,
    });

    // Recomputed in float64: a version scores as the base model reading its most probable phrases, a
    // newline and the mail (after the tokenizer's leading special tokens), by the label words; its loss is
    // the gold words' NLL per token.
    const run = parseRunConfig(json, "discrete");
    const data = runData(run);
    const base = await loadModel(dirSource(modelDir));
    const tok = base.tokenizer;
    const bare = (s: string) => tok.encode(s, { addSpecialTokens: false });
    const head = tok.encode("a").slice(0, tok.encode("a").indexOf(bare("a")[0]!));
    const final = decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), "final").tensors;
    const chosen = bestPrompt(distributionsOf(final, run.method as DiscreteConfig));
    expect(r.stdout).toContain(`the most probable prompt: "${chosen.map((k) => method.phrases[k]).join(" ")}"`);
    const promptIds = (mail: string) => [...head, ...chosen.flatMap((k) => bare(` ${method.phrases[k]}`)), ...bare("\n"), ...bare(mail)];
    const last = referenceLabelAccuracy(base, data.test, method.labels, method.labelWords, 48, { promptIds });
    const test = JSON.parse(readFileSync(join(out, "test.json"), "utf8")) as TestRecord;
    expect(test).toMatchObject({ version: 2, examples: 12 });
    expect(test.accuracy).toBeCloseTo(last.accuracy, 9);
    const gold = data.test.map((e) => ("prompt" in e && e.completion === " spam" ? 0 : 1));
    const nll = -last.scores.reduce((s, x, i) => s + x[gold[i]!]!, 0);
    const tokens = gold.reduce((n: number, g) => n + bare(` ${method.labelWords[g]}`).length, 0);
    expect(test.loss).toBeCloseTo(nll / tokens, 5);
    expect(Math.min(...last.margins)).toBeGreaterThan(1e-4);
  }, 300_000);

  it("runs SecAgg+ within its quantization of the plain run, shards within rounding, FFA-LoRA, compression, hetero ranks", async () => {
    // Three clients (the fewest SecAgg+ takes: a complete graph of two neighbours each, threshold 2), one round:
    // a second would train from versions apart by the quantization, which Adam's normalised steps magnify.
    const json = {
      ...spamRun(
        { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"] },
        { steps: 2, batchSize: 4, lr: 0.05, maxTokens: 48 },
      ),
      clients: 3,
      rounds: 1,
    };
    const plain = await runWith("plain-3", json);
    const secure = await runWith("secure-3", { ...json, secureAggregation: { range: 1, maxWeight: 100 } });
    const sharded = await runWith("sharded-3", { ...json, shards: 2 });
    const ffa = await runWith("ffa-3", { ...json, method: { ...json.method, freezeA: true } });
    const half = await runWith("f16-3", { ...json, uploadDtype: "F16" });
    const quarter = await runWith("i8-3", { ...json, uploadDtype: "I8" });
    const sparse = await runWith("topk-3", { ...json, topK: 0.25 });
    const down = await runWith("f16-down-3", { ...json, downloadDtype: "F16" });
    const het = await runWith("hetlora-3", { ...json, method: { ...json.method, hetero: { rule: "hetlora", ranks: { c1: 1 } } } });
    const flora = await runWith("flora-3", { ...json, method: { ...json.method, hetero: { rule: "flora", ranks: { c1: 1 } } } });
    for (const { r } of [plain, secure, sharded, ffa, half, quarter, sparse, down, het, flora]) expect(r.code, r.stderr).toBe(0);
    expect(records(secure.out).map((x) => [x.status, x.version])).toEqual([
      ["base", 0],
      ["closed", 1],
    ]);
    const adapter = (out: string) =>
      decodeTensorFile(new Uint8Array(readFileSync(join(out, "adapter", "adapter_model.safetensors"))), out).tensors;
    const [a, b] = [adapter(plain.out), adapter(secure.out)];
    let worst = 0;
    let moved = 0;
    for (const [name, t] of a)
      t.forEach((x, i) => {
        worst = Math.max(worst, Math.abs(x - b.get(name)![i]!));
        moved = Math.max(moved, Math.abs(x));
      });
    // bits = 32 − ⌈log2 3⌉ = 30 over [−1, 1]: a unit of 1.9e-9 a value; the mean's error is below 3 units over
    // the weight ratios' sum (80 / 100 examples), besides float32's rounding of the two sums.
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan(3e-8);
    expect(moved).toBeGreaterThan(1e-4);
    // Sharded: the same float32 sums added in another grouping (each shard's, then the root's).
    const c = adapter(sharded.out);
    let apart = 0;
    for (const [name, t] of a) t.forEach((x, i) => (apart = Math.max(apart, Math.abs(x - c.get(name)![i]!))));
    expect(apart).toBeLessThan(1e-6);
    expect(records(sharded.out).map((x) => [x.status, x.version, x.uploads])).toEqual([
      ["base", 0, 0],
      ["closed", 1, 3],
    ]);
    // FFA-LoRA through the client workers: A as version 0 had it (the plain run's A moved from the same start),
    // B moved, and uploads of B alone, about half the plain run's bytes.
    const f = adapter(ffa.out);
    const init = initLoraParams(config, 2, ["q_proj", "v_proj"], 0);
    for (const [name, t] of f) {
      if (!name.endsWith(".lora_A.weight")) continue;
      expect(t).toEqual(init.get(name.slice("base_model.model.".length)));
      expect(a.get(name)).not.toEqual(t);
    }
    const bytesOf = (out: string) => records(out)[1]!.clients!.upload_bytes;
    expect(bytesOf(ffa.out) / bytesOf(plain.out)).toBeGreaterThan(0.45);
    expect(bytesOf(ffa.out) / bytesOf(plain.out)).toBeLessThan(0.55);
    // Per-client ranks through the client workers: c1 trains rank 1 of the version's 2 and uploads half the
    // values (its header as long, but for the digits of its metrics), so the clients' mean upload is a third of
    // half the values' 4 bytes smaller than the plain run's.
    const values = [...a.values()].reduce((n, t) => n + t.length, 0);
    expect(Math.abs(bytesOf(plain.out) - bytesOf(het.out) - (2 * values) / 3)).toBeLessThan(60);
    const hetAdapter = adapter(het.out);
    for (const [name, t] of a) expect(hetAdapter.get(name)!.length).toBe(t.length);
    expect([...hetAdapter].some(([name, t]) => t.some((x, i) => x !== a.get(name)![i]))).toBe(true);
    // FLoRA: the same bytes up as per-client ranks (fresh factors of each client's rank, as many values), and a
    // version of the same rank whose product moved from version 0's (B was zero there).
    expect(Math.abs(bytesOf(flora.out) - bytesOf(het.out))).toBeLessThan(60);
    const fl = adapter(flora.out);
    for (const [name, t] of a) expect(fl.get(name)!.length).toBe(t.length);
    expect([...fl].some(([name, t]) => name.endsWith(".lora_B.weight") && t.some((x) => x !== 0))).toBe(true);
    // F16 uploads: 2 bytes a value fewer (the header's dtypes are as long), and the version within F16's
    // rounding (2^-11 of a value) of the plain one's.
    expect(bytesOf(plain.out) - bytesOf(half.out)).toBe(2 * values);
    const h = adapter(half.out);
    let apart16 = 0;
    let largest = 0;
    for (const [name, t] of a)
      t.forEach((x, i) => {
        apart16 = Math.max(apart16, Math.abs(x - h.get(name)![i]!));
        largest = Math.max(largest, Math.abs(x));
      });
    expect(apart16).toBeGreaterThan(0);
    expect(apart16).toBeLessThan(largest * 2 ** -11 + 1e-7);
    // I8 uploads: 3 bytes a value fewer, less each tensor's scale in the metadata (under 100 bytes), and each
    // value within a few scales (a scale: the largest change / 127) of the plain run's, averaged over the
    // clients' independent roundings.
    const saved = bytesOf(plain.out) - bytesOf(quarter.out);
    expect(saved).toBeGreaterThan(3 * values - 100 * a.size);
    expect(saved).toBeLessThan(3 * values);
    const q8 = adapter(quarter.out);
    for (const [name, t] of a) {
      const start = init.get(name.slice("base_model.model.".length)) ?? new Float32Array(t.length);
      const scale = t.reduce((m, x, i) => Math.max(m, Math.abs(x - start[i]!)), 0) / 127;
      const apart8 = t.reduce((m, x, i) => Math.max(m, Math.abs(x - q8.get(name)![i]!)), 0);
      expect(apart8).toBeGreaterThan(0);
      expect(apart8).toBeLessThan(3 * scale);
    }
    // Top-k (a quarter of each tensor's values, with their positions: 8 bytes each, so half the data; this
    // tiny adapter's header, twice as many entries, takes back part of it): fewer bytes, and each tensor changed
    // in at most the union of the three clients' quarters.
    expect(bytesOf(sparse.out)).toBeLessThan(bytesOf(plain.out));
    const sp = adapter(sparse.out);
    let changed = 0;
    for (const [name, t] of sp) {
      const start = init.get(name.slice("base_model.model.".length)) ?? new Float32Array(t.length);
      const moved = t.filter((x, i) => x !== start[i]).length;
      expect(moved).toBeLessThanOrEqual(3 * Math.ceil(0.25 * t.length));
      changed += moved;
    }
    expect(changed).toBeGreaterThan(0);
    // F16 downloads: 2 bytes a value fewer down (the header's offsets may print a few digits shorter), and a
    // version that moved as far as the plain one's, within F16's rounding of where the clients started.
    const fetched = (out: string) => records(out)[1]!.clients!.download_bytes;
    expect(Math.abs(fetched(plain.out) - fetched(down.out) - 2 * values)).toBeLessThan(64);
    const d16 = adapter(down.out);
    let apartDown = 0;
    for (const [name, t] of a) t.forEach((x, i) => (apartDown = Math.max(apartDown, Math.abs(x - d16.get(name)![i]!))));
    expect(apartDown).toBeGreaterThan(0);
    expect(apartDown).toBeLessThan(0.05 * largest);
  }, 600_000);

  it("trains an adapter of rank and alpha patterns with per-client ranks; fedflare and the float64 reference score it alike", async () => {
    // r 2 and alpha 4 but layer 0's q_proj at rank 1, every v_proj at rank 3 and every q_proj at alpha 3; c1 at
    // rank 1 (so rank 1 everywhere), FlexLoRA's rule; two rounds, so the second trains from the rule's SVD.
    const rankPattern = { "layers.0.self_attn.q_proj": 1, v_proj: 3 };
    const alphaPattern = { q_proj: 3 };
    const method = { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"], rankPattern, alphaPattern };
    const json = { ...spamRun(method, { steps: 2, batchSize: 4, lr: 0.05, maxTokens: 48 }), clients: 3 };
    const { r, out } = await runWith("patterns", { ...json, method: { ...method, hetero: { rule: "flexlora", ranks: { c1: 1 } } } });
    expect(r.code, r.stderr).toBe(0);
    const adapterDir = join(out, "adapter");
    const written = JSON.parse(readFileSync(join(adapterDir, "adapter_config.json"), "utf8"));
    expect([written.r, written.lora_alpha, written.rank_pattern, written.alpha_pattern]).toEqual([2, 4, rankPattern, alphaPattern]);
    const adapter = await loadPeftAdapter(dirSource(adapterDir), config);
    const want: Record<string, [number, number]> = {
      "model.layers.0.self_attn.q_proj": [1, 3],
      "model.layers.1.self_attn.q_proj": [2, 1.5],
      "model.layers.0.self_attn.v_proj": [3, 4 / 3],
      "model.layers.1.self_attn.v_proj": [3, 4 / 3],
    };
    expect(Object.fromEntries([...adapter.pairs].map(([name, p]) => [name, [p.r, p.scaling]]))).toEqual(want);
    for (const p of adapter.pairs.values()) expect(p.b.some((x) => x !== 0)).toBe(true);
    const text = "Win a free prize now, reply to this mail.";
    const scored = JSON.parse((await runCli(["score", "--model", modelDir, "--adapter", adapterDir, "--text", text])).stdout) as {
      tokens: number[];
      logprobs: number[];
    };
    const ref = referenceLogprobs(config, tinyWeights(config, 5), scored.tokens, adapter.pairs);
    scored.logprobs.forEach((lp, i) => expect(Math.abs(lp - ref[i]!)).toBeLessThan(1e-4));
    const base = referenceLogprobs(config, tinyWeights(config, 5), scored.tokens);
    expect(Math.max(...base.map((b, i) => Math.abs(b - ref[i]!)))).toBeGreaterThan(1e-3);
  }, 300_000);

  it("runs a robust federation against an attacker: each round's record names whom Multi-Krum kept", async () => {
    // Five clients, the last scaling its update by 100: Multi-Krum (f 1) keeps the four closest to each other.
    const json = {
      ...spamRun({ type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] }, { steps: 2, batchSize: 4, lr: 0.05, maxTokens: 32 }),
      clients: 5,
      rounds: 1,
      robust: { rule: { name: "multi-krum", byzantine: 1 } },
      attack: { attackers: 1, poison: { type: "scale", factor: 100 } },
    };
    const { r, out } = await runWith("robust", json);
    expect(r.code, r.stderr).toBe(0);
    const [, round] = records(out) as (Record_ & { robust?: RobustSummary })[];
    expect(round!.robust).toMatchObject({ rule: "multi-krum", updates: 5, selected: { count: 4 } });
    expect([...round!.robust!.selected!.clients].sort()).toEqual(["c1", "c2", "c3", "c4"]);
    expect(r.stderr).toMatch(/round 1 closed: .*, multi-krum kept 4 of 5 \(c1 c2 c3 c4\) \(/);
    expect(ruleCounts(parseRunConfig(json, "robust"), records(out) as RoundRecord[])).toEqual({
      rounds: 1,
      updates: { attackers: 1, honest: 4 },
      kept: { attackers: 0, honest: 4 },
    });
  }, 120_000);

  it("stops after three rounds fail in a row, showing why the clients refused their tasks", async () => {
    // 1,001 local steps is over every client's MAX_LOCAL_STEPS (1,000): each refuses, and each round fails as soon as
    // none of its clients can upload, not at its deadline (an hour, past the test's timeout).
    const json = {
      ...spamRun({ type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] }, { steps: 1001, batchSize: 4, lr: 0.05 }),
      deadlineSeconds: 3600,
    };
    const { r, out } = await runWith("failing", json);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("c1 refused (422)");
    expect(r.stderr).toContain("over this client's MAX_LOCAL_STEPS of 1000");
    expect(r.stderr).toContain(
      "fedflare run: error [rounds_failing]: 3 rounds failed in a row (the last: failed by the operator: every sampled " +
        "client uploaded or failed, with 0 uploads: fewer than the round needs)",
    );
    expect(records(out).map((x) => x.status)).toEqual(["base", "failed", "failed", "failed"]);
  }, 120_000);

  it("refuses a config with an unknown field, naming it", async () => {
    const bad = join(root, "bad.json");
    writeFileSync(bad, JSON.stringify({ rounds: 2, colour: "red" }));
    const r = await runCli(["run", "--config", bad, "--out", join(root, "bad-run")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.json: unknown field "colour"; the fields here are "model", "task", /);
  });
});
