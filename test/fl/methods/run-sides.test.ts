// The run sides of the built-in methods (src/fl/methods/<name>/run.ts): what each asks `fedflare run` to
// start, and each scoring a version on a tiny model, checked against the scores `fedflare run` computed
// before the run sides existed (the base model where a version leaves it unchanged, the same forward
// passes written out where it does not).
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource, tokenizerFiles } from "../../../cli/model-dir.ts";
import { parseRunConfig } from "../../../cli/run-config.ts";
import { tokenizeExample } from "../../../src/data/examples.ts";
import type { Example } from "../../../src/data/jsonl.ts";
import { balancedAccuracy, exactMatch, unitErrorRate } from "../../../src/data/metrics.ts";
import { ForwardModel } from "../../../src/engine/forward.ts";
import { loraPairs } from "../../../src/engine/lora/peft.ts";
import { SOFT_PROMPT } from "../../../src/engine/llama/graph.ts";
import { loadModel, type LoadedModel } from "../../../src/engine/model-files.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { beforeCompletion, heldOutLoss, labelAccuracy, labeledPrompts } from "../../../src/engine/train/evaluate.ts";
import { bestPrompt, discreteItems, localRowScorer, promptAccuracy, promptTokens } from "../../../src/fl/methods/discrete/round.ts";
import { softPromptLayout, softPromptOf } from "../../../src/fl/methods/fedbpt/search.ts";
import { SEED_SUMS } from "../../../src/fl/methods/fedkseed/seed-sums.ts";
import { defaultRunMethod } from "../../../src/fl/methods/lora/run.ts";
import type { MethodConfig, ScoreContext } from "../../../src/fl/methods/method.ts";
import type { OffsiteConfig } from "../../../src/fl/methods/offsite/config.ts";
import { runMethods } from "../../../src/fl/methods/run.ts";
import { serverMethods } from "../../../src/fl/methods/server.ts";
import { heldOutWords, verbalizerRefusal } from "../../../src/fl/methods/shared/held-out.ts";
import { decodeTensorFile } from "../../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../../src/fl/tensors.ts";
import type { FederationConfig } from "../../../src/protocol/federation.ts";
import { tempDir, writeHfModel } from "../../fixtures/hf-model.ts";
import { referenceGreedy } from "../../fixtures/reference-accuracy.ts";
import { tinyConfig, tinyWeights } from "../../fixtures/tiny-llama.ts";

const root = tempDir("run-sides");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const labels = ["spam", "ham"];
const mails: Example[] = [
  { prompt: "Win free money now, click here", completion: " spam" },
  { prompt: "The meeting moved to Tuesday at noon", completion: " ham" },
  { prompt: "Cheap offer, act today", completion: " spam" },
  { prompt: "Thanks for the notes from the review", completion: " ham" },
  { prompt: "You won a prize: claim it", completion: " spam" },
];
const local = { steps: 2, batchSize: 4, lr: 1e-2, maxTokens: 48 };
const SEED = 3;
let model: LoadedModel;
let ctx: ScoreContext;
let modelDir: string;

beforeAll(async () => {
  const config = tinyConfig({ heads: 4, kvHeads: 2, layers: 4 });
  modelDir = writeHfModel(join(root, "model"), config, tinyWeights(config, 7));
  model = await loadModel(dirSource(modelDir));
  const eos = model.config.eosTokenIds[0] ?? 0;
  ctx = {
    runtime: ortNodeRuntime(2),
    model,
    quant: "f32",
    seed: SEED,
    local,
    maxTokens: 48,
    heldOut: mails.map((e) => tokenizeExample(e, model.tokenizer, eos, 48)),
    task: { labels, labeled: labeledPrompts(mails) },
    generation: null,
  };
});

const parsed = (json: unknown) => runMethods.parse(json).config;
/** The federation's fields the server sides read for version 0. */
const federation = { model: { name: "tiny" }, seed: SEED, local } as unknown as FederationConfig;
const version0 = (m: MethodConfig): TensorMap =>
  decodeTensorFile(serverMethods.get(m.type).initial(m, federation, model.config).tensors!, "v0").tensors;
const score = (m: MethodConfig, version: TensorMap) => runMethods.get(m.type).score(m, version, ctx);

/** What `fedflare run` scored for a model before the run sides: held-out loss, then the accuracy of `words`. */
async function reference(
  forward: ForwardModel,
  o: { params?: Map<string, Float32Array>; after?: number[]; words?: readonly string[] } = {},
) {
  const after = o.after ?? [];
  const { loss } = await heldOutLoss(
    forward,
    ctx.heldOut.map((e) => beforeCompletion(e, after)),
    8,
    undefined,
    o.params,
  );
  const scored = await labelAccuracy(forward, model.tokenizer, ctx.task!.labeled, labels, {
    maxTokens: 48,
    after,
    ...(o.params ? { params: o.params } : {}),
    ...(o.words ? { words: o.words } : {}),
  });
  await forward.release();
  return {
    loss,
    accuracy: scored.accuracy,
    balanced: balancedAccuracy(
      scored.predicted,
      ctx.task!.labeled.map((x) => x.label),
    ),
  };
}
const base = async () =>
  reference(await ForwardModel.create(ctx.runtime, model.config, model.weights, { kind: "forward", quant: "f32", nll: true }));

function expectScores(got: { loss: number; accuracy: number | null; balanced: number | null }, want: typeof got) {
  expect(got.loss).toBeCloseTo(want.loss, 5);
  expect(got.accuracy).toBe(want.accuracy);
  expect(got.balanced).toBe(want.balanced);
}

describe("run sides", () => {
  it("registers the five built-in methods and refuses a bad method config naming its field", () => {
    expect(runMethods.types()).toEqual(["lora", "offsite", "fedkseed", "fedbpt", "discrete"]);
    expect(() => runMethods.parse({ type: "lora", r: 0, alpha: 8, targetModules: ["q_proj"] })).toThrow(/field "method\.r"/);
    expect(() => runMethods.parse({ type: "nope" })).toThrow(/"nope" is not one of/);
  });

  it("validates a run config's method by its run side: the default is LoRA above layer 1, a bad field is a usage error", () => {
    expect(parseRunConfig({}, "test").method).toEqual(defaultRunMethod);
    expect(parseRunConfig({ method: { type: "fedbpt", labels } }, "test").method).toMatchObject({ type: "fedbpt", promptTokens: 10 });
    expect(() => parseRunConfig({ method: { type: "offsite", bottom: 1 } }, "run.json")).toThrow(/^run\.json: field "method\.top"/);
    expect(() => parseRunConfig({ method: { r: 4 } }, "run.json")).toThrow(/run\.json: field "method\.type"/);
    // The strategy and the deadline as the coordinator would refuse them, before workerd starts; a good
    // strategy kept as written.
    expect(() => parseRunConfig({ strategy: { name: "fedavg", lerning_rate: 5 } }, "run.json")).toThrow(
      /^run\.json: strategy config: unknown field "lerning_rate"; the fields here are "name", "serverLearningRate"$/,
    );
    expect(() => parseRunConfig({ deadlineSeconds: 1e6 }, "run.json")).toThrow(/^run\.json: field "deadlineSeconds"/);
    // A misspelt field is named as unknown, with the field it is within two edits of; a field left out, as missing.
    expect(() => parseRunConfig({ rouns: 3 }, "run.json")).toThrow(/^run\.json: unknown field "rouns"; did you mean "rounds"\?$/);
    expect(() => parseRunConfig({ strategy: { name: "fedadam", etaa: 1 } }, "run.json")).toThrow(
      /unknown field "etaa"; did you mean "eta"\?$/,
    );
    expect(() => parseRunConfig({ method: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"], alhpa: 3 } }, "run.json")).toThrow(
      /^run\.json: unknown field "method\.alhpa"; did you mean "alpha"\?$/,
    );
    expect(() => parseRunConfig({ local: { steps: 2, lr: 0.1 } }, "run.json")).toThrow(/^run\.json: field "local\.batchSize" is missing$/);
    expect(parseRunConfig({ strategy: { name: "fedadam", eta: 0.01 } }, "run.json").strategy).toEqual({ name: "fedadam", eta: 0.01 });
  });

  it("asks for the endpoint for split LoRA's trunk and a completions API for discrete prompts, nothing else", () => {
    const lora = (fromLayer: number) => parsed({ type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"], fromLayer });
    const service = (m: MethodConfig, trunk: "endpoint" | "local") => runMethods.get(m.type).service(m, { trunk });
    expect(service(lora(1), "endpoint")).toBe("endpoint");
    expect(service(lora(1), "local")).toBe("none");
    expect(service(lora(0), "endpoint")).toBe("none");
    expect(runMethods.get("lora").serviceNote!(lora(2))).toBe("serves the trunk: clients hold only layers 2+");
    const discrete = parsed({ type: "discrete", phrases: ["a", "b"], labels });
    expect(service(discrete, "local")).toBe("api");
    expect(service(parsed({ type: "offsite", bottom: 1, top: 1, middle: 0 }), "endpoint")).toBe("none");
    expect(service(parsed({ type: "fedbpt", labels }), "endpoint")).toBe("none");
  });

  it("refuses tasks a method cannot score: discrete prompts without labels, a verbalizer lacking a task label", () => {
    const discrete = parsed({ type: "discrete", phrases: ["a", "b"], labels });
    expect(runMethods.get("discrete").taskRefusal!(discrete, { name: "g2p", labels: null })).toMatch(
      /use a classification task \(spam\), not g2p/,
    );
    expect(runMethods.get("discrete").taskRefusal!(discrete, { name: "spam", labels })).toBeNull();
    const bpt = parsed({ type: "fedbpt", labels: ["yes", "no"], labelWords: ["y", "n"] });
    expect(runMethods.get("fedbpt").taskRefusal!(bpt, { name: "spam", labels })).toBe(
      `method.labels ["yes","no"] lack the task's label "spam"`,
    );
    expect(verbalizerRefusal({ labels: ["yes", "no"] }, { labels })).toBeNull();
    expect(heldOutWords({ labels: ["ham", "spam"], labelWords: ["work", "offer"] }, labels)).toEqual(["offer", "work"]);
    expect(heldOutWords({ labels }, labels)).toBeUndefined();
  });

  it("LoRA: version 0 (B = 0) scores as the base model; a moved adapter does not", async () => {
    const m = parsed({ type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"] });
    const v0 = version0(m);
    expectScores(await score(m, v0), await base());
    const moved = new Map([...v0].map(([n, t]) => [n, n.includes("lora_B") ? t.map((_, i) => 0.05 * Math.sin(i)) : t]));
    expect((await score(m, moved)).loss).not.toBeCloseTo((await base()).loss, 5);
    expect(runMethods.get("lora").usage(m, v0, { adapterDir: "A", modelDir: "M" })).toBe(
      'npx fedflare score --model M --adapter A --text "..."',
    );
  });

  it("LoRA: an exact-match task's greedy answers, with the version's adapter, match the float64 reference's", async () => {
    const m = parsed({ type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"] });
    const moved = new Map([...version0(m)].map(([n, t]) => [n, n.includes("lora_B") ? t.map((_, i) => 0.3 * Math.sin(i)) : t]));
    const prompts = ["Pronounce cat:", "Pronounce dog:", "Pronounce bird:"];
    const gold = [" K AE1 T", " D AO1 G", " B ER1 D"];
    const reference = referenceGreedy(model, prompts, (n) => Math.min(6, 48 - n), loraPairs(moved, 2, 2));
    // The first gold answer is the reference's own, so exact match is at least a third whatever the model says.
    const answers = prompts.map((prompt, i) => ({ prompt, answer: i === 0 ? ` ${reference[0]}` : gold[i]! }));
    const scored = await runMethods.get("lora").score(m, moved, { ...ctx, task: null, generation: { answers, maxNew: 6 } });
    const golds = answers.map((a) => a.answer);
    expect(scored.generated).toEqual({ exactMatch: exactMatch(reference, golds), errorRate: unitErrorRate(reference, golds) });
    expect(scored.generated!.exactMatch).toBeGreaterThanOrEqual(1 / 3);
    expect(scored.generated!.errorRate).toBeGreaterThan(0);
    // Without answers asked (every validation round), no generation.
    expect((await runMethods.get("lora").score(m, moved, { ...ctx, task: null })).generated).toBeUndefined();
  });

  it("offsite-tuning: prepares the emulator and the owner's adapter, which plugged back in scores as the base model", async () => {
    const m = parsed({ type: "offsite", bottom: 1, top: 1, middle: 2 });
    const side = runMethods.get("offsite");
    const prepared = side.prepare!(m, model, { name: "tiny", tokenizer: tokenizerFiles(modelDir) });
    expect(prepared.note).toBe("offsite-tuning: adapter layers [0,3], clients run the emulator's layers [0,1,2,3]");
    expect(prepared.modelFiles.has("offsite.json")).toBe(true);
    expectScores(await score(m, decodeTensorFile(prepared.initial, "initial").tensors), await base());
    // On label words: scored by those words, the loss their cross-entropy, not the completion's NLL.
    const words = ["the", "and"];
    const offsite = { type: "offsite", bottom: 1, top: 1, middle: 2 };
    const verbal = parsed({ ...offsite, labels, labelWords: words }) as OffsiteConfig;
    const forward = await ForwardModel.create(ctx.runtime, model.config, model.weights, { kind: "forward", quant: "f32", nll: true });
    const want = await labelAccuracy(forward, model.tokenizer, ctx.task!.labeled, labels, { maxTokens: 48, words });
    await forward.release();
    const got = await score(verbal, decodeTensorFile(prepared.initial, "initial").tensors);
    expect(got.loss).toBeCloseTo(want.crossEntropy, 5);
    expect(got.accuracy).toBe(want.accuracy);
    expect(got.loss).not.toBeCloseTo((await base()).loss, 3);
    expect(side.taskRefusal!(verbal, { name: "g2p", labels: null })).toBe(
      "method.labels trains offsite-tuning on a classification task's label words, not g2p",
    );
    expect(side.taskRefusal!(parsed({ ...offsite, labels: ["yes", "no"] }) as OffsiteConfig, { name: "spam", labels })).toBe(
      `method.labels ["yes","no"] lack the task's label "spam"`,
    );
    await expect(score(parsed({ ...offsite, labels, labelWords: ["the", "quick"] }), new Map())).rejects.toThrow(
      /offsite-tuning's label words are one token each in the model's vocabulary; " quick" is 5/,
    );
  });

  it("FedKSeed: no seed moved scores as w0 (the base tensors, or LoRA at B = 0); moved seeds change the model", async () => {
    for (const trains of [
      { type: "full", tensors: ["model.norm.weight"] },
      { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] },
    ]) {
      const m = parsed({ type: "fedkseed", k: 16, labels, labelWords: ["offer", "work"], trains });
      const v0 = version0(m);
      const want = await reference(
        await ForwardModel.create(ctx.runtime, model.config, model.weights, { kind: "forward", quant: "f32", nll: true }),
        {
          words: ["offer", "work"],
        },
      );
      expectScores(await score(m, v0), want);
      const moved = new Map([[SEED_SUMS, Float32Array.from({ length: 16 }, (_, i) => (i % 3) - 1)]]);
      expect((await score(m, moved)).loss).not.toBeCloseTo(want.loss, 6);
    }
  });

  it("FedBPT: a version scores as the base model with the soft prompt p0 + A z, placed where the method says", async () => {
    for (const placement of ["prefix", "suffix"] as const) {
      const m = parsed({ type: "fedbpt", promptTokens: 2, dimension: 6, labels, placement });
      const version = new Map([...version0(m)].map(([n, t]) => [n, n === "mean" ? t.map((_, i) => 0.3 * (i - 2)) : t]));
      const prompt = softPromptOf(model.config, model.weights, { promptTokens: 2, dimension: 6, seed: SEED })([...version.get("mean")!]);
      const { inputs, after } = softPromptLayout(model.config, 2, placement);
      const forward = await ForwardModel.create(ctx.runtime, model.config, model.weights, {
        kind: "forward",
        quant: "f32",
        nll: true,
        inputs,
      });
      expectScores(await score(m, version), await reference(forward, { params: new Map([[SOFT_PROMPT, prompt]]), after }));
    }
  });

  it("discrete prompts: a version scores by its most probable prompt, the loss being the label words' NLL per token", async () => {
    const m = parsed({ type: "discrete", slots: 2, phrases: ["free", "money", "meeting"], labels, placement: "suffix" });
    const version = new Map([["probs", Float32Array.of(0.2, 0.5, 0.3, 0.6, 0.1, 0.3)]]);
    const forward = await ForwardModel.create(ctx.runtime, model.config, model.weights, { kind: "forward", quant: "f32", nll: true });
    const r = await promptAccuracy(
      localRowScorer(forward),
      promptTokens(model.tokenizer, ["free", "money", "meeting"], labels, "suffix"),
      [1, 0],
      discreteItems(model.tokenizer, ctx.task!.labeled, labels),
      48,
    );
    await forward.release();
    expectScores(await score(m, version), {
      loss: r.labelNll,
      accuracy: r.accuracy,
      balanced: balancedAccuracy(
        r.predicted.map((k) => labels[k]!),
        ctx.task!.labeled.map((x) => x.label),
      ),
    });
    expect(bestPrompt([[0.2, 0.5, 0.3]])).toEqual([1]);
    expect(runMethods.get("discrete").usage(m, version, { adapterDir: "A", modelDir: "M" })).toBe(
      'the slots\' distributions over the phrases; the most probable prompt: "money free"',
    );
    expect(version0(m).get("probs")!.length).toBe(6);
  });
});
