// Forward throughput of the Llama graph (logits only: no nll, no cache) from random weights, on ORT-web
// (WASM, one thread) and onnxruntime-node (one and two threads), against each runtime's own float32
// MatMul ceiling measured in the same run: this machine is noisy, so only ratios within one run count.
//
//   node bench/forward.ts [--quick]     --quick: tiny and small only, fewer repetitions
//
// Prints a table to stdout, progress to stderr, and writes bench/results/forward.json.
import { parseLlamaConfig, type LlamaConfig } from "../src/engine/config.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { initLlamaWeights } from "../src/engine/llama/init.ts";
import { expectedTensors } from "../src/engine/llama/names.ts";
import { forwardFlopsPerToken } from "./lib/flops.ts";
import type { QuantMode } from "../src/engine/quantize.ts";
import type { Runtime, RuntimeName } from "../src/engine/runtime.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../src/engine/runtimes/ort-web.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { ortMatMul } from "./lib/ceiling.ts";
import { writeResults } from "./lib/results.ts";
import { timeInterleaved, type TimingOptions } from "./lib/timing.ts";

const quick = process.argv.includes("--quick");

// Batch 4 x 128 tokens: a client's scoring/training batch, and M = 512 rows per linear, where the
// MatMul kernels are past their small-matrix overheads.
const BATCH = 4;
const SEQ = 128;
const TOKENS = BATCH * SEQ;

const TIMING: TimingOptions = quick ? { warmup: 1, reps: 3, minMs: 300, maxReps: 10 } : { warmup: 2, reps: 5, minMs: 2000, maxReps: 30 };

interface Size {
  name: string;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  quants: QuantMode[];
}

// Intermediate sizes are multiples of 32, int4's block size along the input of down_proj (688, the
// usual 8/3 * 256 rounded to 16, would refuse int4; 704 is the nearest that does not).
const SIZES: Size[] = [
  { name: "tiny", hidden: 128, intermediate: 352, layers: 2, heads: 4, kvHeads: 2, vocab: 2048, quants: ["f32", "int8"] },
  { name: "small", hidden: 256, intermediate: 704, layers: 4, heads: 8, kvHeads: 4, vocab: 4096, quants: ["f32", "int8", "int4"] },
  { name: "medium", hidden: 512, intermediate: 1376, layers: 8, heads: 8, kvHeads: 4, vocab: 8192, quants: ["f32", "int8", "int4"] },
];

const RUNTIMES: { name: RuntimeName; threads: number; make: () => Runtime }[] = [
  { name: "ort-web", threads: 1, make: () => ortWebRuntime() },
  { name: "ort-node", threads: 1, make: () => ortNodeRuntime(1) },
  { name: "ort-node", threads: 2, make: () => ortNodeRuntime(2) },
];

function llamaConfig(s: Size): LlamaConfig {
  return parseLlamaConfig({
    model_type: "llama",
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    vocab_size: s.vocab,
    max_position_embeddings: SEQ,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
  });
}

function paramCount(c: LlamaConfig): number {
  let n = 0;
  for (const shape of expectedTensors(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

const sizes = quick ? SIZES.filter((s) => s.name !== "medium") : SIZES;
const steps = sizes.reduce((n, s) => n + RUNTIMES.length * s.quants.length, 0);
let step = 0;

console.error(
  `forward bench: batch ${BATCH} x seq ${SEQ}, warm-up ${TIMING.warmup}, at least ${TIMING.reps} timed rounds${quick ? " (quick)" : ""}`,
);
const sizeInfo = [];
const forward = [];
for (const size of sizes) {
  const config = llamaConfig(size);
  // Weights as a freshly initialised model (N(0, 0.02), norms 1): values at a realistic scale.
  const weights = initLlamaWeights(config, { seed: 1 });
  const next = seededUniform(3);
  const ids = Array.from({ length: BATCH }, () => Array.from({ length: SEQ }, () => Math.floor(next() * size.vocab)));
  const params = paramCount(config);
  const fpt = forwardFlopsPerToken(config, SEQ);
  sizeInfo.push({ ...size, params, flopsPerToken: fpt });

  for (const spec of RUNTIMES) {
    const rt = spec.make();
    // The ceiling at the shape of the model's widest linears (gate/up) over one batch, timed in rounds
    // with the forward so that both see the same load from whatever else shares the machine.
    const [m, k, n] = [TOKENS, size.hidden, size.intermediate];
    const matMul = await ortMatMul(rt, m, k, n);
    // MatMul calls per sample so that they do the forward's FLOPs: a fast MatMul is then timed over
    // many calls rather than one, and both halves of a round span about the same wall time.
    const calls = Math.max(1, Math.round((fpt * TOKENS) / (2 * m * k * n)));
    const matMuls = async () => {
      for (let i = 0; i < calls; i++) await matMul.run();
    };
    for (const quant of size.quants) {
      const model = await ForwardModel.create(rt, config, weights, { kind: "forward", quant });
      const [t, mm] = await timeInterleaved([() => model.run({ ids }), matMuls], TIMING);
      await model.release();
      const tokensPerSec = TOKENS / (t!.medianMs / 1000);
      const gflops = (tokensPerSec * fpt) / 1e9;
      const matMulMs = mm!.medianMs / calls;
      const ceilingGflops = (2 * m * k * n) / matMulMs / 1e6;
      const ceiling = { m, k, n, callsPerSample: calls, sampleMedianMs: mm!.medianMs, samplesMs: mm!.samplesMs, msPerCall: matMulMs };
      forward.push({
        size: size.name,
        params,
        quant,
        runtime: spec.name,
        threads: spec.threads,
        ...t!,
        tokensPerSec,
        gflops,
        ceiling,
        ceilingGflops,
        mfu: gflops / ceilingGflops,
      });
      console.error(
        `[${++step}/${steps}] ${size.name} ${quant} ${spec.name} x${spec.threads}: forward ${fmt(t!.medianMs, 1)} ms, MatMul ` +
          `${fmt(matMulMs, 2)} ms x ${calls} (medians of ${t!.samplesMs.length})` +
          ` -> ${fmt(tokensPerSec)} tok/s, ${fmt(gflops, 1)} of ${fmt(ceilingGflops, 1)} GFLOP/s`,
      );
    }
    await matMul.release();
  }
}

console.log(
  `Llama forward, batch ${BATCH} x seq ${SEQ}, logits only; ceiling = float32 MatMul [${TOKENS}, hidden] x [hidden, intermediate], ` +
    `same runtime, timed in turns with the forward`,
);
printTable(
  ["size", "params", "quant", "runtime", "threads", "tokens/s", "GFLOP/s", "ceiling GFLOP/s", "MFU %"],
  forward.map((r) => [
    r.size,
    `${fmt(r.params / 1e6, 1)}M`,
    r.quant,
    r.runtime,
    r.threads,
    fmt(r.tokensPerSec),
    fmt(r.gflops, 1),
    fmt(r.ceilingGflops, 1),
    fmt(100 * r.mfu, 1),
  ]),
);
const file = await writeResults(quick ? "forward-quick" : "forward", {
  settings: { batch: BATCH, seq: SEQ, timing: TIMING, quick },
  sizes: sizeInfo,
  forward,
});
console.log(`\nwrote ${file}`);
