// Throughput of one LoRA training step (batch 8 x 128 tokens, r = 8 on q_proj and v_proj, loss = mean
// next-token NLL, forward and backward to the LoRA gradients) on the default model's architecture:
// our ONNX training graph on ORT-web (WASM, one thread; float32 and int8 base) and onnxruntime-node
// (one and two threads), and the same step written with @tensorflow/tfjs on its wasm backend
// (one thread), both with tf.variableGrads and with a hand-written backward. Each runtime is measured
// against its own float32 MatMul ceiling timed in turns with its steps; ORT-web and tfjs-wasm are timed
// in the same rounds, so their ratio holds on this noisy machine.
//
//   node bench/train.ts [--quick]     --quick: a tiny model and batch 2 x 64, fewer repetitions
//
// Prints a table to stdout, progress to stderr, and writes bench/results/train.json. Loads
// models/fedflare-sotu-4m when it exists (config.json and model.safetensors), else random weights.
import fs, { existsSync } from "node:fs";
import { dirSource } from "../cli/model-dir.ts";
import { parseLlamaConfig, type LlamaConfig } from "../src/engine/config.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { trainableTensors, type TrainSpec, type Weights } from "../src/engine/llama/graph.ts";
import { initLlamaWeights, normalSamples } from "../src/engine/llama/init.ts";
import { linearName, linearShape, type LinearModule } from "../src/engine/llama/names.ts";
import { loadConfig, loadWeights } from "../src/engine/model-files.ts";
import { floatWeights, type QuantMode } from "../src/engine/quantize.ts";
import { ortRuntime, type Runtime } from "../src/engine/runtime.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { ortWeb, ortWebRuntime } from "../src/engine/runtimes/ort-web.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { TrainStep, type StepResult } from "../src/engine/train/step.ts";
import { windowBatch } from "../src/data/lm-windows.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { ortMatMul, type Ceiling } from "./lib/ceiling.ts";
import { writeResults } from "./lib/results.ts";
import { tf, TfjsLlamaLora, useTfjsWasm, type StepOutput } from "./lib/tfjs-llama.ts";
import { timeInterleaved, type Timing, type TimingOptions } from "./lib/timing.ts";

const quick = process.argv.includes("--quick");
const BATCH = quick ? 2 : 8;
const SEQ = quick ? 64 : 128;
const TOKENS = BATCH * SEQ;
// LoRA r = 8, alpha = 16 (scaling alpha / r) on q and v: PEFT's usual first adapter.
const MODULES: readonly LinearModule[] = ["q_proj", "v_proj"];
const SPEC: TrainSpec = { lora: { r: 8, scaling: 16 / 8, modules: MODULES } };
const TIMING: TimingOptions = quick ? { warmup: 1, reps: 3 } : { warmup: 1, reps: 5, minMs: 60_000, maxReps: 7 };
const MODEL_DIR = new URL("../models/fedflare-sotu-4m/", import.meta.url).pathname;

/** The default model (models/fedflare-sotu-4m once pretrained, else its architecture with random weights), or a tiny one with --quick. */
async function benchModel(): Promise<{ source: string; config: LlamaConfig; weights: Weights }> {
  if (!quick && existsSync(`${MODEL_DIR}config.json`) && existsSync(`${MODEL_DIR}model.safetensors`)) {
    const source = dirSource(MODEL_DIR);
    const config = await loadConfig(source);
    return { source: MODEL_DIR, config, weights: await loadWeights(source, config) };
  }
  const [hidden, intermediate, layers, heads, kvHeads, vocab] = quick ? [128, 352, 2, 4, 2, 2048] : [256, 704, 4, 8, 4, 4096];
  const config = parseLlamaConfig({
    model_type: "llama",
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    vocab_size: vocab,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
  });
  return { source: quick ? "random (tiny)" : "random", config, weights: initLlamaWeights(config, { seed: 1 }) };
}

/**
 * Model FLOPs per token at sequence length T (PaLM's convention: the work the step needs, whatever an
 * implementation spends on top):
 *   forward  = 2 * (linear weights of every layer + the head, tied or not)
 *              + layers * 4 * T * heads * headDim           (QK^T and PV over all T x T scores)
 *              + LoRA: 2 * r * (in + out) per adapted linear  (x A^T, then (x A^T) B^T)
 *   backward = the input gradient of every linear (2 * its weights: the same as its forward) but no
 *              gradient of the frozen weights; 4 attention products (dP = dO V^T, dV = P^T dO,
 *              dQ = dS K, dK = dS^T Q: twice the forward's 2); LoRA's dA, dB and input gradient
 *              (twice its forward); less what nothing needs: layer 0's input comes from the frozen
 *              embedding, so its q/k/v input gradients and its dK are skipped.
 * So train ≈ 2.1 x forward. Norms, RoPE, softmax, SiLU, the loss and dequantization are left out.
 */
function flopsPerToken(c: LlamaConfig, T: number): { forward: number; train: number } {
  const size = (m: LinearModule) => linearShape(c, m).reduce((a, b) => a * b, 1);
  const layerLinear = (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const).reduce(
    (n, m) => n + size(m),
    0,
  );
  const linear = c.numLayers * layerLinear + c.vocabSize * c.hiddenSize;
  const attention = 4 * T * c.numHeads * c.headDim;
  const lora = MODULES.reduce((n, m) => n + 2 * SPEC.lora!.r * linearShape(c, m).reduce((a, b) => a + b, 0), 0);
  const forward = 2 * linear + c.numLayers * (attention + lora);
  const backward =
    2 * linear + c.numLayers * (2 * attention + 2 * lora) - 2 * (size("q_proj") + size("k_proj") + size("v_proj")) - attention / 2;
  return { forward, train: forward + backward };
}

/** The ceiling on tfjs-wasm: tf.matMul on its fast path (2-D, nothing transposed, the weight kept). */
function tfjsMatMul(m: number, k: number, n: number): Ceiling {
  const next = seededUniform(2);
  const b = tf.tensor2d(normalSamples(next, k * n, 1), [k, n]);
  const a = tf.tensor2d(normalSamples(next, m * k, 1), [m, k]);
  // tfjs-wasm kernels run synchronously: the product is done when matMul returns.
  return { run: async () => tf.matMul(a, b).dispose(), release: async () => tf.dispose([a, b]) };
}

interface Work {
  label: string;
  runtime: string;
  threads: number;
  quant: QuantMode;
  /** "train": the LoRA step; "forward": its forward alone (to see what the backward costs). */
  step: "train" | "forward";
  /** The key of its runtime's ceiling in the same measure() call. */
  ceiling: string;
  run: () => Promise<unknown>;
}

const { source, config, weights } = await benchModel();
const fpt = flopsPerToken(config, SEQ);
const next = seededUniform(3);
const batch = windowBatch(
  Array.from({ length: BATCH }, () => Array.from({ length: SEQ + 1 }, () => Math.floor(next() * config.vocabSize))),
);
// LoRA tensors as after some training (B != 0, unlike PEFT's init), so that every gradient is non-zero and compared.
const lora = new Map(trainableTensors(config, SPEC).map((t) => [t.name, normalSamples(next, t.shape[0]! * t.shape[1]!, 0.02)]));
const [m, k, n] = [TOKENS, config.hiddenSize, config.intermediateSize];
// MatMul calls per sample so that they do about one training step's FLOPs (both halves of a round span similar time).
const calls = Math.max(1, Math.round((fpt.train * TOKENS) / (2 * m * k * n)));
console.error(
  `train bench: ${source}, batch ${BATCH} x ${SEQ}, LoRA r=${SPEC.lora!.r} on ${MODULES.join(",")}, ` +
    `${fmt(fpt.train / 1e6, 2)} MFLOP/token (forward ${fmt(fpt.forward / 1e6, 2)})${quick ? " (quick)" : ""}`,
);

await useTfjsWasm();
const tfjsInfo = {
  version: tf.version.tfjs,
  backend: tf.getBackend(),
  simd: tf.env().getBool("WASM_HAS_SIMD_SUPPORT"),
  threads: tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT") ? "multi" : 1,
};
const tfjsModel = new TfjsLlamaLora(config, floatWeights(weights), SPEC.lora!, lora, SEQ);
const webRt = ortWebRuntime();
const ortStep = (rt: Runtime, quant: QuantMode) => TrainStep.create(rt, config, weights, { kind: "train", spec: SPEC, quant });
const webF32 = await ortStep(webRt, "f32");
const webInt8 = await ortStep(webRt, "int8");
// The training step's forward alone (same LoRA, frozen; logits and nll out): what the backward adds.
const frozenLora = new Map(
  MODULES.flatMap((mod) => Array.from({ length: config.numLayers }, (_, l) => linearName(l, mod))).map((name) => [
    name,
    { a: lora.get(`${name}.lora_A.weight`)!, b: lora.get(`${name}.lora_B.weight`)!, r: SPEC.lora!.r, scaling: SPEC.lora!.scaling },
  ]),
);
const webForward = await ForwardModel.create(webRt, config, weights, { kind: "forward", nll: true, lora: frozenLora });

// The same step, checked before it is timed: losses, and gradients against ORT-web float32.
const results: Record<string, StepResult | StepOutput> = {
  "ort-web f32": await webF32.run(batch, lora),
  "ort-web int8": await webInt8.run(batch, lora),
  "tfjs variableGrads": tfjsModel.stepAutodiff(batch),
  "tfjs hand-written": tfjsModel.stepManual(batch),
};
const ref = results["ort-web f32"]!;
const checks = Object.entries(results).map(([name, r]) => {
  let maxRel = 0;
  for (const [t, g] of ref.grads) {
    const other = r.grads.get(t)!;
    const scale = g.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    for (let i = 0; i < g.length; i++) maxRel = Math.max(maxRel, Math.abs(other[i]! - g[i]!) / scale);
  }
  return { name, loss: r.loss, lossRelDiff: Math.abs(r.loss - ref.loss) / ref.loss, gradMaxRelDiff: maxRel };
});
for (const c of checks)
  console.error(
    `check ${c.name}: loss ${c.loss.toFixed(6)} (rel. diff ${c.lossRelDiff.toExponential(1)}), gradients max |diff| / max |grad| ` +
      `${c.gradMaxRelDiff.toExponential(1)}`,
  );

interface Row extends Omit<Work, "run" | "ceiling">, Timing {
  tokensPerSec: number;
  gflops: number;
  ceilingGflops: number;
  mfu: number;
}
const rows: Row[] = [];

/** Times the works and the ceilings in turns (one call of each per round); a row per work against its ceiling. */
async function measure(works: Work[], ceilings: Record<string, Ceiling>): Promise<void> {
  const names = Object.keys(ceilings);
  const ceilingRuns = names.map((name) => async () => {
    for (let i = 0; i < calls; i++) await ceilings[name]!.run();
  });
  const timings = await timeInterleaved([...works.map((w) => w.run), ...ceilingRuns], TIMING);
  const ceilingGflops = new Map(names.map((name, i) => [name, (2 * m * k * n * calls) / timings[works.length + i]!.medianMs / 1e6]));
  works.forEach(({ run, ceiling, ...w }, i) => {
    const t = timings[i]!;
    const tokensPerSec = TOKENS / (t.medianMs / 1000);
    const gflops = (tokensPerSec * (w.step === "train" ? fpt.train : fpt.forward)) / 1e9;
    const c = ceilingGflops.get(ceiling)!;
    rows.push({ ...w, ...t, tokensPerSec, gflops, ceilingGflops: c, mfu: gflops / c });
    console.error(
      `${w.label}: ${fmt(t.medianMs, 1)} ms/step (median of ${t.samplesMs.length}) -> ${fmt(tokensPerSec)} tok/s, ${fmt(gflops, 1)} of ` +
        `${fmt(c, 1)} GFLOP/s`,
    );
  });
  for (const c of Object.values(ceilings)) await c.release();
}

// ORT-web and tfjs-wasm in the same rounds: both one thread of WASM SIMD in this process.
console.error(`timing ORT-web and tfjs-wasm in turns; ceilings: MatMul [${m}, ${k}] x [${k}, ${n}], ${calls} calls per sample`);
await measure(
  [
    {
      label: "ort-web f32",
      runtime: "ort-web",
      threads: 1,
      quant: "f32",
      step: "train",
      ceiling: "ort",
      run: () => webF32.run(batch, lora),
    },
    {
      label: "ort-web int8",
      runtime: "ort-web",
      threads: 1,
      quant: "int8",
      step: "train",
      ceiling: "ort",
      run: () => webInt8.run(batch, lora),
    },
    {
      label: "ort-web f32 forward",
      runtime: "ort-web",
      threads: 1,
      quant: "f32",
      step: "forward",
      ceiling: "ort",
      run: () => webForward.run({ ids: batch.ids, targets: batch.targets }),
    },
    {
      label: "tfjs-wasm hand-written",
      runtime: "tfjs-wasm, hand-written backward",
      threads: 1,
      quant: "f32",
      step: "train",
      ceiling: "tfjs",
      run: async () => tfjsModel.stepManual(batch),
    },
    {
      label: "tfjs-wasm variableGrads",
      runtime: "tfjs-wasm, tf.variableGrads",
      threads: 1,
      quant: "f32",
      step: "train",
      ceiling: "tfjs",
      run: async () => tfjsModel.stepAutodiff(batch),
    },
  ],
  { ort: await ortMatMul(webRt, m, k, n), tfjs: tfjsMatMul(m, k, n) },
);
await Promise.all([webInt8.release(), webForward.release()]);
tfjsModel.dispose();

for (const threads of [1, 2]) {
  const rt = ortNodeRuntime(threads);
  const step = await ortStep(rt, "f32");
  const r = await step.run(batch, lora);
  console.error(
    `check ort-node x${threads}: loss ${r.loss.toFixed(6)} (rel. diff ${(Math.abs(r.loss - ref.loss) / ref.loss).toExponential(1)})`,
  );
  await measure(
    [
      {
        label: `ort-node f32 x${threads}`,
        runtime: "ort-node",
        threads,
        quant: "f32",
        step: "train",
        ceiling: "ort",
        run: () => step.run(batch, lora),
      },
    ],
    { ort: await ortMatMul(rt, m, k, n) },
  );
  await step.release();
}

const profile = await profileOrtWeb();
await webF32.release();

const row = (label: string) => rows.find((r) => r.label === label)!;
const web = row("ort-web f32");
const [manual, autodiff] = [row("tfjs-wasm hand-written"), row("tfjs-wasm variableGrads")];
const best = manual.tokensPerSec >= autodiff.tokensPerSec ? manual : autodiff;
const ratios = {
  webOverTfjsVariableGrads: web.tokensPerSec / autodiff.tokensPerSec,
  webOverTfjsBest: web.tokensPerSec / best.tokensPerSec,
  tfjsBest: best.runtime,
  webInt8OverTfjsBest: row("ort-web int8").tokensPerSec / best.tokensPerSec,
  webTrainOverForwardMs: web.medianMs / row("ort-web f32 forward").medianMs,
};

console.log(
  `LoRA training step (r=${SPEC.lora!.r} on ${MODULES.join(", ")}), batch ${BATCH} x ${SEQ}, ${source}; ` +
    `${fmt(fpt.train / 1e6, 2)} MFLOP/token` +
    ` (forward ${fmt(fpt.forward / 1e6, 2)}); ceiling = float32 MatMul [${m}, ${k}] x [${k}, ${n}] on the same runtime, ` +
    `timed in turns with its steps`,
);
printTable(
  ["runtime", "threads", "quant", "step", "ms/step", "tokens/s", "GFLOP/s", "ceiling GFLOP/s", "MFU %"],
  rows.map((r) => [
    r.runtime,
    r.threads,
    r.quant,
    r.step === "train" ? "LoRA train" : "forward only",
    fmt(r.medianMs, 1),
    fmt(r.tokensPerSec),
    fmt(r.gflops, 1),
    fmt(r.ceilingGflops, 1),
    fmt(100 * r.mfu, 1),
  ]),
);
console.log(
  `\nsame step: loss ${checks.map((c) => `${c.name} ${c.loss.toFixed(5)}`).join(", ")}; gradients vs ort-web f32: ${checks
    .slice(1)
    .map((c) => `${c.name} ${c.gradMaxRelDiff.toExponential(1)}`)
    .join(", ")} (max |diff| / max |grad|)`,
);
console.log(`ORT-web f32 tokens/s / tfjs-wasm tf.variableGrads: ${fmt(ratios.webOverTfjsVariableGrads, 2)}x`);
console.log(
  `ORT-web f32 tokens/s / tfjs-wasm best (${best.runtime}): ${fmt(ratios.webOverTfjsBest, 2)}x (target >= 2x: ` +
    `${ratios.webOverTfjsBest >= 2 ? "met" : "not met"}); int8: ${fmt(ratios.webInt8OverTfjsBest, 2)}x`,
);
console.log(
  `ORT-web f32 training MFU: ${fmt(100 * web.mfu, 1)} % of its MatMul ceiling (target >= 40 %: ${web.mfu >= 0.4 ? "met" : "not met"}); ` +
    `training step / forward-only: ${fmt(ratios.webTrainOverForwardMs, 2)}x the time for ${fmt(fpt.train / fpt.forward, 2)}x the FLOPs`,
);
const profiledMs = profile.reduce((a, p) => a + p.msPerStep, 0);
console.log(
  `ORT-web f32 training step by op type (profiler; its kernels add up to ${fmt(profiledMs, 1)} ms per step): ${profile
    .slice(0, 8)
    .map((p) => `${p.opType} ${fmt(p.msPerStep, 1)} ms (${fmt(100 * p.share, 0)} %)`)
    .join(", ")}`,
);
const file = await writeResults(quick ? "train-quick" : "train", {
  settings: { batch: BATCH, seq: SEQ, lora: SPEC.lora, timing: TIMING, quick, ceiling: { m, k, n, callsPerSample: calls }, tfjs: tfjsInfo },
  model: {
    source,
    hidden: config.hiddenSize,
    intermediate: config.intermediateSize,
    layers: config.numLayers,
    heads: config.numHeads,
    kvHeads: config.numKvHeads,
    vocab: config.vocabSize,
    tied: config.tieWordEmbeddings,
    flopsPerToken: fpt,
  },
  checks,
  rows,
  ratios,
  ortWebProfile: profile,
});
console.log(`\nwrote ${file}`);

/**
 * Time per op type in ORT-web's float32 training step, from its profiler (enableProfiling), averaged
 * over the runs after the first. The WASM build prints the profile (a JSON array of trace events) to
 * stdout with fs.writeSync when the session ends, so that is where it is read from.
 */
async function profileOrtWeb(runs = 3): Promise<{ opType: string; msPerStep: number; share: number }[]> {
  const rt = ortRuntime("ort-web", ortWeb as never, { executionProviders: ["wasm"], enableProfiling: true });
  const step = await ortStep(rt, "f32");
  for (let i = 0; i < runs + 1; i++) await step.run(batch, lora);
  const mutableFs = fs as { writeSync: typeof fs.writeSync };
  const writeSync = fs.writeSync;
  let text = "";
  mutableFs.writeSync = ((fd: number, data: string, ...rest: never[]) => {
    if (fd !== 1 || typeof data !== "string") return writeSync(fd, data, ...rest);
    text += data;
    return Buffer.byteLength(data);
  }) as typeof fs.writeSync;
  try {
    await step.release();
  } finally {
    mutableFs.writeSync = writeSync;
  }
  const events = JSON.parse(text) as { cat: string; name: string; ts: number; dur: number; args: { op_name?: string } }[];
  const firstRunEnd = Math.min(...events.filter((e) => e.name === "model_run").map((e) => e.ts + e.dur));
  const byType = new Map<string, number>();
  for (const e of events)
    if (e.cat === "Node" && e.args.op_name && e.ts > firstRunEnd)
      byType.set(e.args.op_name, (byType.get(e.args.op_name) ?? 0) + e.dur / 1000 / runs);
  const total = [...byType.values()].reduce((a, b) => a + b, 0);
  return [...byType].sort((a, b) => b[1] - a[1]).map(([opType, msPerStep]) => ({ opType, msPerStep, share: msPerStep / total }));
}
