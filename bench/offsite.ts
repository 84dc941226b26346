// Offsite-tuning (Xiao, Lin and Han 2023) on a real task, in the paper's five rows: the full model and
// its emulator zero-shot, the adapter fine-tuned on the full model and on the emulator, and the
// emulator-tuned adapter plugged back into the full model. Task: SpamAssassin spam/ham as instruction text,
// scored by the label words' log-probabilities (accuracy) and by the completion's NLL. The adapter (the
// bottom and top layers, fully trained) is tuned centrally here, to isolate the emulator's effect; the
// federated run of the same method goes through `fedflare run` / the integration test.
// Each emulator row is given twice: the uniformly layer-dropped emulator, and the same distilled
// (distillEmulator, on SOTU windows: the owner's data, not the task's).
// Run: node bench/offsite.ts [--quick] [--model DIR] [--bottom 2 --top 2 --middle 4] [--distill-steps N]
import { basename } from "node:path";
import type { Weights } from "../src/engine/llama/graph.ts";
import { elementCount, floatOf } from "../src/engine/quantize.ts";
import { benchArgs } from "./lib/args.ts";
import { sotuSplit } from "../cli/corpora.ts";
import { spamSplits } from "../cli/task-splits.ts";
import { dirSource } from "../cli/model-dir.ts";
import { completionExample, exampleBatch, type TokenizedExample } from "../src/data/examples.ts";
import { wilsonInterval } from "../src/data/metrics.ts";
import { packWindows, shuffled } from "../src/data/lm-windows.ts";
import { SPAM_LABELS, type SpamMail, spamExample, spamLabel } from "../src/data/tasks/spam.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { loadModel } from "../src/engine/model-files.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { heldOutLoss, labelAccuracy, type LabeledPrompt } from "../src/engine/train/evaluate.ts";
import { adamW } from "../src/engine/train/optimizer.ts";
import { TrainStep } from "../src/engine/train/step.ts";
import { Trainer } from "../src/engine/train/trainer.ts";
import { distillEmulator } from "../src/fl/methods/offsite/distill.ts";
import { adapterTensorNames, emulatorWeights, offsiteLayout, plugIn } from "../src/fl/methods/offsite/emulator.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({
  options: {
    quick: { type: "boolean", default: false },
    model: { type: "string", default: "models/fedflare-sotu-12l" },
    bottom: { type: "string", default: "2" },
    top: { type: "string", default: "2" },
    middle: { type: "string", default: "4" },
    steps: { type: "string" },
    lr: { type: "string", default: "1e-4" },
    "distill-steps": { type: "string" },
  },
});
const quick = values.quick;
const PER_LABEL_TRAIN = quick ? 16 : 350;
const PER_LABEL_TEST = quick ? 8 : 150;
const STEPS = Number(values.steps ?? (quick ? 4 : 300));
const BATCH = 8;
const MAX_TOKENS = 128;
const LR = Number(values.lr);
const DISTILL_STEPS = Number(values["distill-steps"] ?? (quick ? 4 : 400));
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const model = await loadModel(dirSource(values.model));
const c = model.config;
const split = { bottom: Number(values.bottom), top: Number(values.top), middle: Number(values.middle) };
const layout = offsiteLayout(c.numLayers, split);
const names = adapterTensorNames(c, layout);
const runtime = ortNodeRuntime(2);

// A balanced, seeded sample of each label: PER_LABEL_TRAIN training mails from the spam task's clean training
// split, PER_LABEL_TEST from its test split (cli/task-splits.ts: no mail in both, nor resent from the half the
// mail model was pretrained on). The training split holds 361 spam mails.
const splits = spamSplits();
const sample = (from: readonly SpamMail[], n: number) => {
  const mails = shuffled([...from], seededUniform(11));
  return SPAM_LABELS.flatMap((l) => mails.filter((m) => spamLabel(m) === l).slice(0, n)).map((m) => ({
    pair: spamExample(m, 400),
    label: spamLabel(m),
  }));
};
const train = shuffled(sample(splits.train, PER_LABEL_TRAIN), seededUniform(12));
const test = sample(splits.test, PER_LABEL_TEST);
const eos = c.eosTokenIds[0] ?? 0;
const tokenize = (x: (typeof train)[number]): TokenizedExample =>
  completionExample(
    model.tokenizer.encode(x.pair.prompt),
    model.tokenizer.encode(x.pair.completion, { addSpecialTokens: false }),
    MAX_TOKENS,
  );
const trainExamples = train.map(tokenize);
const testExamples = test.map(tokenize);
const testPrompts: LabeledPrompt[] = test.map((x) => ({ prompt: x.pair.prompt, label: x.label }));
log(
  `${basename(values.model)}: ${c.numLayers} layers; adapter ${JSON.stringify(layout.adapter)}, emulator ` +
    `${JSON.stringify(layout.emulator)}; ${train.length} training and ${test.length} test mails`,
);

async function evaluate(weights: Weights, layerIndices?: readonly number[]) {
  const forward = await ForwardModel.create(runtime, c, weights, { kind: "forward", nll: true, ...(layerIndices ? { layerIndices } : {}) });
  const { accuracy } = await labelAccuracy(forward, model.tokenizer, testPrompts, SPAM_LABELS, { maxTokens: MAX_TOKENS });
  const { loss } = await heldOutLoss(forward, testExamples);
  await forward.release();
  return { accuracy, loss };
}

/** The adapter's tensors after STEPS AdamW updates of the label words' NLL, on the full model or the emulator. */
async function tune(weights: Weights, layerIndices?: readonly number[]) {
  const step = await TrainStep.create(runtime, c, weights, {
    kind: "train",
    spec: { full: names },
    ...(layerIndices ? { layerIndices } : {}),
  });
  const trainer = new Trainer(step, new Map(names.map((n) => [n, Float32Array.from(floatOf(weights.get(n)!))])), {
    optimizer: adamW({ weightDecay: 0 }),
    schedule: { lr: LR, warmupSteps: Math.floor(STEPS / 10), totalSteps: STEPS },
    clip: 1,
  });
  const started = performance.now();
  let order: TokenizedExample[] = [];
  const u = seededUniform(13);
  for (let s = 0; s < STEPS; s++) {
    if (order.length < BATCH) order = [...order, ...shuffled(trainExamples, u)];
    const r = await trainer.update([exampleBatch(order.splice(0, BATCH))]);
    if ((s + 1) % 50 === 0) log(`  step ${s + 1}/${STEPS} loss ${r.loss.toFixed(4)}`);
  }
  await step.release();
  return { adapter: trainer.params, seconds: (performance.now() - started) / 1000 };
}

const full = model.weights;
const dropped = emulatorWeights(c, full, layout);
log(`distilling the emulator's middle: ${DISTILL_STEPS} updates on SOTU windows`);
const distillStarted = performance.now();
const sotu = packWindows(
  sotuSplit()
    .train.slice(0, 40)
    .map((a) => [...model.tokenizer.encode(a.text), eos]),
  MAX_TOKENS,
);
const distilled = await distillEmulator(runtime, c, full, dropped, split, layout, sotu, {
  steps: DISTILL_STEPS,
  batch: BATCH,
  lr: 1e-4,
  onStep: (s, loss, d) => void (s % 50 === 0 && log(`  step ${s}/${DISTILL_STEPS} loss ${loss.toFixed(4)} (distillation ${d.toFixed(4)})`)),
});
const distillSeconds = (performance.now() - distillStarted) / 1000;
log("zero-shot");
const fullZero = await evaluate(full);
log("fine-tuning the adapter on the full model");
const fullTuned = await tune(full);
const fullFt = await evaluate(plugIn(c, full, fullTuned.adapter, layout));

const params = (w: Weights) => [...w.values()].reduce((a, t) => a + elementCount(t), 0);
type Row = { setting: string; emulator: string | null; layers: number; accuracy: number; loss: number; tuneSeconds: number | null };
const variants = [];
for (const [kind, weights] of [
  ["uniform drop", dropped],
  ["distilled", distilled],
] as const) {
  log(`emulator (${kind}): zero-shot, then fine-tuning the adapter on it`);
  const zero = await evaluate(weights, layout.emulator);
  const tuned = await tune(weights, layout.emulator);
  const ft = await evaluate(plugIn(c, weights, tuned.adapter, layout), layout.emulator);
  variants.push({ kind, zero, tuned, ft, plugged: await evaluate(plugIn(c, full, tuned.adapter, layout)) });
}
// The paper's five rows, the emulator's rows once per emulator.
const E = layout.emulator.length;
const rows: Row[] = [
  { setting: "full model, zero-shot", emulator: null, layers: c.numLayers, ...fullZero, tuneSeconds: null },
  ...variants.map((v) => ({ setting: `emulator (${v.kind}), zero-shot`, emulator: v.kind, layers: E, ...v.zero, tuneSeconds: null })),
  { setting: "full model, adapter fine-tuned", emulator: null, layers: c.numLayers, ...fullFt, tuneSeconds: fullTuned.seconds },
  ...variants.map((v) => ({
    setting: `emulator (${v.kind}), adapter fine-tuned`,
    emulator: v.kind,
    layers: E,
    ...v.ft,
    tuneSeconds: v.tuned.seconds,
  })),
  ...variants.map((v) => ({
    setting: `plug-in (${v.kind} emulator's adapter in the full model)`,
    emulator: v.kind,
    layers: c.numLayers,
    ...v.plugged,
    tuneSeconds: null,
  })),
];
// Each accuracy's 95% Wilson interval over the test mails (one seed: the interval is the sampling error of the test set).
const wilson = (r: Row) => wilsonInterval(Math.round(r.accuracy * test.length), test.length);
const interval = (r: Row) => {
  const { low, high } = wilson(r);
  return `${fmt(100 * low, 1)}-${fmt(100 * high, 1)}`;
};
printTable(
  ["setting", "layers run", "accuracy %", "95% interval", "completion NLL", "tuning s"],
  rows.map((r) => [
    r.setting,
    r.layers,
    fmt(100 * r.accuracy, 1),
    interval(r),
    r.loss.toFixed(4),
    r.tuneSeconds === null ? "-" : fmt(r.tuneSeconds, 1),
  ]),
);
console.log(
  `\nadapter: layers ${JSON.stringify(layout.adapter)} (${fmt(params(fullTuned.adapter))} parameters, trained in full); emulator: ` +
    `${JSON.stringify(layout.emulator)} (${fmt(params(dropped))} parameters vs ${fmt(params(full))} in the full model)`,
);
console.log(
  `${STEPS} AdamW updates of ${BATCH} mails, lr ${LR}; ${test.length} balanced test mails (chance 50 %); distillation: ` +
    `${DISTILL_STEPS} updates, ${fmt(distillSeconds, 1)} s`,
);
const file = await writeResults(quick ? "offsite-quick" : "offsite", {
  model: basename(values.model),
  split,
  layout,
  task: { name: "spam", splits: "clean (cli/task-splits.ts)", trainMails: train.length, testMails: test.length, maxTokens: MAX_TOKENS },
  training: { steps: STEPS, batch: BATCH, lr: LR, optimizer: "adamw" },
  adapterParameters: params(fullTuned.adapter),
  emulatorParameters: params(dropped),
  distillation: { steps: DISTILL_STEPS, batch: BATCH, lr: 1e-4, seconds: distillSeconds },
  fullParameters: params(full),
  rows: rows.map((r) => ({ ...r, accuracyInterval: wilson(r) })),
});
log(`wrote ${file}`);
