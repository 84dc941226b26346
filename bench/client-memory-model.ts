// Fits the activation term of a client's memory plan (src/engine/client-plan.ts, ACTIVATION_FIT): onnxruntime-web's
// WASM heap after split-LoRA steps (bench/lib/wasm-heap-probe.ts, one fresh process each) on the shapes of
// published checkpoints with random int8 weights, for 1 and 2 layers above the cut and 32 and 128 tokens;
// the heap less onnxruntime's start and the held weights is the activation term, fitted by least squares
// on the plan's features, each point weighed by 1 / its heap (the error that matters is relative: a small
// client near the limit counts as much as a large one). Prints each point with its prediction and writes
// the coefficients and points. --refit fits the points of the last run again without measuring.
// Run: node bench/client-memory-model.ts [--refit]
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Matrix, solve } from "ml-matrix";
import { parseLlamaConfig } from "../src/engine/config.ts";
import { activationFeatures, heldTensors, MIB, WASM_START_BYTES } from "../src/engine/client-plan.ts";
import { splitFootprint } from "../src/fl/methods/lora/server.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { PUBLISHED_CONFIGS } from "./lib/published-configs.ts";
import { writeResults } from "./lib/results.ts";

const SHAPES = [
  "HuggingFaceTB/SmolLM-135M",
  "HuggingFaceTB/SmolLM-360M",
  "Qwen/Qwen2.5-0.5B",
  "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
] as const;
type Point = { shape: string; layers: number; seq: number; heapBytes: number; activationBytes: number; features: number[] };
const RESULTS = new URL("./results/client-memory-model.json", import.meta.url);
const refit = process.argv.includes("--refit");
const points: Point[] = refit ? (JSON.parse(readFileSync(RESULTS, "utf8")) as { points: Point[] }).points : [];
for (const shape of refit ? [] : SHAPES) {
  const config = PUBLISHED_CONFIGS[shape];
  const c = parseLlamaConfig(config);
  for (const layers of [1, 2])
    for (const seq of [32, 128]) {
      const cut = c.numLayers - layers;
      const out = execFileSync(
        process.execPath,
        [
          "--no-wasm-tier-up",
          new URL("./lib/wasm-heap-probe.ts", import.meta.url).pathname,
          JSON.stringify({ config, cut, batch: 1, seq }),
        ],
        { encoding: "utf8", maxBuffer: 1 << 20 },
      );
      const heapBytes = (JSON.parse(out.trim().split("\n").at(-1)!) as { wasmHeapBytes: number }).wasmHeapBytes;
      const held = [...heldTensors(c, splitFootprint(c, cut), "int8").values()].reduce((a, b) => a + b, 0);
      const s = { quant: "int8" as const, batch: 1, seq };
      points.push({
        shape,
        layers,
        seq,
        heapBytes,
        activationBytes: heapBytes - WASM_START_BYTES - held,
        features: activationFeatures(c, layers, s),
      });
      process.stderr.write(`${shape}, ${layers} layers, ${seq} tokens: heap ${fmt(heapBytes / MIB, 1)} MiB\n`);
    }
}
// Weighted least squares on features scaled to comparable size, coefficients then unscaled.
const scale = points[0]!.features.map((_, j) => Math.max(...points.map((p) => Math.abs(p.features[j]!))) || 1);
const X = new Matrix(points.map((p) => p.features.map((v, j) => v / scale[j]! / p.heapBytes)));
const y = Matrix.columnVector(points.map((p) => p.activationBytes / p.heapBytes));
const beta = solve(X.transpose().mmul(X), X.transpose().mmul(y))
  .to1DArray()
  .map((b, j) => b / scale[j]!);
const fit = { fixed: beta[0]!, perLayerFloat: beta[1]!, perLayerToken: beta[2]! };
const predicted = (p: (typeof points)[number]) => p.features.reduce((s, v, j) => s + v * beta[j]!, 0);
printTable(
  ["shape", "layers", "tokens", "heap MiB", "activations MiB", "fitted MiB", "error %"],
  points.map((p) => [
    p.shape,
    String(p.layers),
    String(p.seq),
    fmt(p.heapBytes / MIB, 1),
    fmt(p.activationBytes / MIB, 1),
    fmt(predicted(p) / MIB, 1),
    fmt((100 * (predicted(p) - p.activationBytes)) / p.heapBytes, 1),
  ]),
);
console.log(`\nACTIVATION_FIT = ${JSON.stringify(fit)}`);
console.log(
  `wrote ${await writeResults("client-memory-model", { fit, points: points.map((p) => ({ ...p, fittedBytes: predicted(p) })) })}`,
);
