// One split-LoRA training step on ORT-web in this process, on random int8 weights of a model's shape
// (only the layers above the cut and the head are made, so even a 1B shape is quick), and the size of
// onnxruntime-web's WASM heap after it: the heap never shrinks, so that is its peak. Run it in a fresh
// process per measurement (bench/client-memory-model.ts, test/engine/client-plan.test.ts):
//   node bench/lib/wasm-heap-probe.ts '{"config": {...HF config.json}, "cut": 28, "batch": 1, "seq": 64}'
// prints {"wasmHeapBytes": n, "loss": x, "stepMs": the second step's wall time}.
import { parseLlamaConfig } from "../../src/engine/config.ts";
import type { Weights } from "../../src/engine/llama/graph.ts";
import { expectedTensors } from "../../src/engine/llama/names.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import type { BaseTensor } from "../../src/engine/quantize.ts";
import { storedBits } from "../../src/engine/quantized-checkpoint.ts";
import { ortWebRuntime } from "../../src/engine/runtimes/ort-web.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { TrainStep } from "../../src/engine/train/step.ts";

let heap: WebAssembly.Memory | null = null;
const OriginalMemory = WebAssembly.Memory;
// onnxruntime-web's glue creates its memory in JavaScript; keep a handle on it to read its size.
(WebAssembly as { Memory: unknown }).Memory = function (this: unknown, d: WebAssembly.MemoryDescriptor) {
  const m = new OriginalMemory(d);
  heap = m;
  return m;
};
(WebAssembly.Memory as unknown as { prototype: unknown }).prototype = OriginalMemory.prototype;

const args = JSON.parse(process.argv[2]!) as { config: unknown; cut: number; batch: number; seq: number; quant?: "int8" | "int4" };
const c = parseLlamaConfig(args.config);
const mode = args.quant ?? "int8";
const layers = Array.from({ length: c.numLayers - args.cut }, (_, i) => args.cut + i);
const u = seededUniform(1);
const weights = new Map<string, BaseTensor>();
for (const [name, shape] of expectedTensors(c, layers)) {
  if (shape.length === 1) {
    weights.set(
      name,
      Float32Array.from({ length: shape[0]! }, () => (name.endsWith(".bias") ? 0 : 1)),
    );
    continue;
  }
  const [rows, cols] = shape as [number, number];
  const scale = () => Float32Array.from({ length: storedBits(name, mode) === 8 ? rows : (rows * cols) / 32 }, () => 0.02 / 8);
  const bytes = new Uint8Array(storedBits(name, mode) === 8 ? rows * cols : (rows * cols) / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(u() * 256);
  weights.set(
    name,
    storedBits(name, mode) === 8
      ? { kind: "int8", shape: [rows, cols], q: new Int8Array(bytes.buffer), scale: scale() }
      : { kind: "int4", shape: [rows, cols], packed: bytes, scale: scale() },
  );
}
const modules = ["q_proj", "v_proj"] as const;
const spec = { lora: { r: 8, scaling: 2, modules: [...modules], fromLayer: args.cut } };
const step = await TrainStep.create(ortWebRuntime(), c, weights as Weights, { kind: "split", spec, fromLayer: args.cut });
weights.clear();
const params = new Map([...initLoraParams(c, 8, [...modules], 1)].filter(([k]) => Number(k.split(".")[2]) >= args.cut));
const ids = Array.from({ length: args.batch }, (_, b) => Array.from({ length: args.seq }, (_, i) => (b * 31 + i * 7) % c.vocabSize));
const batch = {
  ids,
  targets: ids,
  lossWeights: ids.map((r) => r.map(() => 1 / (args.batch * args.seq))),
  hidden: Float32Array.from({ length: args.batch * args.seq * c.hiddenSize }, () => u() - 0.5),
};
let loss = 0;
let stepMs = 0;
for (let i = 0; i < 2; i++) {
  const started = performance.now();
  loss = (await step.run(batch, params)).loss;
  stepMs = performance.now() - started;
}
console.log(JSON.stringify({ wasmHeapBytes: (heap as WebAssembly.Memory | null)?.buffer.byteLength ?? 0, loss, stepMs }));
