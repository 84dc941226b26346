// Offloading the frozen trunk: per LoRA training step on the client's runtime (ORT-web, one thread, the
// Worker's), the whole model run locally vs the layers above a cut layer with the trunk's hidden states
// from the inference endpoint (fetched, or cached from an earlier epoch), at each cut; bytes the client
// downloads per step; and the endpoint's scoring throughput against batch size as MFU: achieved FLOP/s over
// the float32 MatMul ceiling of its runtime, measured in the same run.
// Run: node bench/offload.ts [--quick]
import { basename } from "node:path";
import { dirSource } from "../cli/model-dir.ts";
import { windowBatch } from "../src/data/lm-windows.ts";
import { bearer } from "../src/protocol/bearer.ts";
import { loraScaling } from "../src/engine/lora/peft.ts";
import { initLoraParams } from "../src/engine/lora/init.ts";
import { loadModel } from "../src/engine/model-files.ts";
import { detectNodeProvider, ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../src/engine/runtimes/ort-web.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { TrainStep } from "../src/engine/train/step.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { scorePrompts } from "../src/engine/score.ts";
import { connectTrunk, padStates, trunkStates } from "../src/fl/client/trunk-states.ts";
import { startEndpoint } from "../workers/inference-endpoint/server.ts";
import { ortMatMul } from "./lib/ceiling.ts";
import { forwardFlopsPerToken } from "./lib/flops.ts";
import { printTable } from "../src/report/table.ts";
import { writeResults } from "./lib/results.ts";
import { median, timeInterleaved, type Timing } from "./lib/timing.ts";

const quick = process.argv.includes("--quick");
const MODEL = "models/fedflare-sotu-4m";
const B = quick ? 2 : 8;
const T = quick ? 32 : 128;
const log = (s: string) => process.stderr.write(`${s}\n`);

const model = await loadModel(dirSource(MODEL));
const c = model.config;
const fwdFlopsPerToken = forwardFlopsPerToken(c, T);
const u = seededUniform(3);
const windows = Array.from({ length: B }, () => Array.from({ length: T + 1 }, () => 3 + Math.floor(u() * (c.vocabSize - 3))));
const batch = windowBatch(windows);
const TOKEN = "bench";
const auth = bearer(TOKEN);
const endpoint = await startEndpoint({
  model,
  fingerprint: "bench",
  name: basename(MODEL),
  port: 0,
  token: TOKEN,
  maxBatch: 8,
  maxWaitMs: 2,
});
const ep = await connectTrunk(endpoint.url, c.hiddenSize, TOKEN);
const modules = ["q_proj", "v_proj"] as const;

const steps: Record<string, unknown>[] = [];
for (let cut = 1; cut < c.numLayers; cut++) {
  log(`cut after layer ${cut}`);
  const spec = { lora: { r: 8, scaling: loraScaling({ r: 8, alpha: 16, useRslora: false }), modules: [...modules], fromLayer: cut } };
  const params = new Map([...initLoraParams(c, 8, [...modules], 1)].filter(([k]) => Number(k.split(".")[2]) >= cut));
  const local = await TrainStep.create(ortWebRuntime(), c, model.weights, { kind: "train", spec, quant: "int8" });
  const upper = await TrainStep.create(ortWebRuntime(), c, model.weights, { kind: "split", spec, quant: "int8", fromLayer: cut });
  const fresh = () => ({ store: new Map<string, Float32Array>(), get: async () => null, put: async () => undefined });
  const kept = new Map<string, Float32Array>();
  const cache = { get: async (k: string) => kept.get(k) ?? null, put: async (k: string, v: Float32Array) => void kept.set(k, v) };
  await trunkStates(ep, cache, cut, batch.ids);
  let bytes = 0;
  const fetchStates = async () => {
    const res = await fetch(`${endpoint.url}/v1/hidden-states`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      body: JSON.stringify({ model: ep.model, input_ids: batch.ids, layer: cut, dtype: "bf16" }),
    });
    bytes = (await res.arrayBuffer()).byteLength;
  };
  const [l, offloaded, cached, fetchOnly] = await timeInterleaved(
    [
      () => local.run(batch, params),
      async () => upper.run({ ...batch, hidden: padStates(await trunkStates(ep, fresh(), cut, batch.ids), T, c.hiddenSize) }, params),
      async () => upper.run({ ...batch, hidden: padStates(await trunkStates(ep, cache, cut, batch.ids), T, c.hiddenSize) }, params),
      fetchStates,
    ],
    { warmup: 1, reps: quick ? 2 : 5 },
  );
  steps.push({
    cut,
    localMs: l!.medianMs,
    offloadedMs: offloaded!.medianMs,
    cachedMs: cached!.medianMs,
    fetchMs: fetchOnly!.medianMs,
    bytesF32: B * T * c.hiddenSize * 4,
    bytesBf16: bytes,
    uploadBytesPerStep: 0,
  });
  await local.release();
  await upper.release();
}

// Endpoint throughput: concurrent scoring requests of one T-token prompt each, batched up to maxBatch,
// next to the scoring graph alone on the same rows (what the requests' HTTP, JSON and batching add) and
// the MatMul ceiling, timed in turns.
const throughput: Record<string, unknown>[] = [];
const provider = await detectNodeProvider();
const runtime = ortNodeRuntime(2, provider);
// The ceiling is the model's largest MatMul, the head's [B*T, hidden] x [hidden, vocab]: the widest shape
// runs fastest, and an MLP-shaped one ([hidden, intermediate]) ran slower than the whole scoring graph
// (an MFU over 100%).
const ceiling = await ortMatMul(runtime, B * T, c.hiddenSize, c.vocabSize);
const ceilingFlops = 2 * B * T * c.hiddenSize * c.vocabSize;
const scorer = await ForwardModel.create(runtime, c, model.weights, { kind: "forward", logprobs: true });
for (const maxBatch of quick ? [1, 4] : [1, 2, 4, 8, 16]) {
  // As many requests computing as a batch holds, so one-prompt requests can fill it.
  const server = await startEndpoint({
    model,
    fingerprint: "bench",
    name: "m",
    port: 0,
    token: TOKEN,
    maxBatch,
    maxWaitMs: 2,
    limits: { maxConcurrent: maxBatch },
  });
  const prompts = Array.from({ length: maxBatch * 2 }, (_, i) => windows[i % B]!.slice(0, T));
  const score = () =>
    Promise.all(
      prompts.map((p) =>
        fetch(`${server.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", ...auth },
          body: JSON.stringify({ model: "m", prompt: p, max_tokens: 0, echo: true, logprobs: 0 }),
        }).then((r) => r.json()),
      ),
    );
  const rows = prompts.slice(0, maxBatch).map((ids) => ({ ids, topK: 0 }));
  // The ceiling's turn does the FLOPs of the requests' turn, so both span as long a stretch of this
  // shared machine's load: one MatMul alone lasts a few ms, and a burst of other work would swing it.
  const matmuls = Math.max(1, Math.round((prompts.length * T * fwdFlopsPerToken) / ceilingFlops));
  const ceilingTurn = async () => {
    for (let i = 0; i < matmuls; i++) await ceiling.run();
  };
  const [t, graph, ceil] = await timeInterleaved([score, () => scorePrompts(scorer, rows), ceilingTurn], {
    warmup: 1,
    reps: quick ? 2 : 9,
  });
  const ceilingGflops = (matmuls * ceilingFlops) / (ceil!.medianMs / 1000) / 1e9;
  // Each round's work over the ceiling's in the same round (its time over the ceiling turn's, FLOPs
  // weighed), then the median: neighbouring turns share the load that other jobs put on the machine.
  const mfu = (work: Timing, tokens: number) =>
    median(work.samplesMs.map((ms, i) => (tokens * fwdFlopsPerToken * ceil!.samplesMs[i]!) / (matmuls * ceilingFlops * ms)));
  const tokensPerSec = (prompts.length * T) / (t!.medianMs / 1000);
  const graphTokensPerSec = (maxBatch * T) / (graph!.medianMs / 1000);
  throughput.push({
    maxBatch,
    requests: prompts.length,
    tokensPerSec,
    graphTokensPerSec,
    ceilingGflops,
    mfu: mfu(t!, prompts.length * T),
    graphMfu: mfu(graph!, maxBatch * T),
  });
  await server.close();
  log(`endpoint max batch ${maxBatch}: ${tokensPerSec.toFixed(0)} tok/s`);
}
await scorer.release();
await ceiling.release();
await endpoint.close();

printTable(
  ["cut", "local ms/step", "offloaded ms/step", "cached ms/step", "fetch ms", "download KiB/step (bf16)", "f32 would be KiB"],
  steps.map((s) => [
    String(s.cut),
    (s.localMs as number).toFixed(0),
    (s.offloadedMs as number).toFixed(0),
    (s.cachedMs as number).toFixed(0),
    (s.fetchMs as number).toFixed(0),
    ((s.bytesBf16 as number) / 1024).toFixed(0),
    ((s.bytesF32 as number) / 1024).toFixed(0),
  ]),
);
process.stdout.write(
  `client step: LoRA r=8 on q,v above the cut, int8 base, ORT-web one thread, batch ${B} x ${T}; uploads per step: none ` +
    `(gradients stay local)\n\n`,
);
printTable(
  ["max batch", "requests", "tokens/s", "GFLOP/s", "ceiling GFLOP/s", "MFU %", "graph alone tokens/s", "graph alone MFU %"],
  throughput.map((t) => [
    String(t.maxBatch),
    String(t.requests),
    (t.tokensPerSec as number).toFixed(0),
    (((t.tokensPerSec as number) * fwdFlopsPerToken) / 1e9).toFixed(1),
    (t.ceilingGflops as number).toFixed(1),
    (100 * (t.mfu as number)).toFixed(1),
    (t.graphTokensPerSec as number).toFixed(0),
    (100 * (t.graphMfu as number)).toFixed(1),
  ]),
);
process.stdout.write(
  `endpoint: ${provider} (onnxruntime-node, 2 threads), scoring ${T}-token prompts (echo, logprobs 0) with log-probs in the ` +
    `graph, ${fwdFlopsPerToken.toFixed(0)} FLOP/token; MFU = achieved FLOP/s / the float32 MatMul ceiling ` +
    `[${B * T}, ${c.hiddenSize}] x [${c.hiddenSize}, ${c.vocabSize}] (the head's, the widest) timed in turns with it ` +
    "(the median of each round's ratio)\n",
);
await writeResults(quick ? "offload-quick" : "offload", { model: MODEL, batch: B, seq: T, provider, steps, throughput, fwdFlopsPerToken });
