import { parseArgs } from "node:util";
import { MIB, planStep, WORKER_MEMORY_BYTES } from "../../src/engine/client-plan.ts";
import { loadConfig } from "../../src/engine/model-files.ts";
import type { QuantMode } from "../../src/engine/quantize.ts";
import { serverMethods } from "../../src/fl/methods/server.ts";
import { fmt, printTable } from "../../src/report/table.ts";
import { dirSource } from "../model-dir.ts";
import { positiveInt, positiveNumber } from "../numbers.ts";
import { UsageError } from "../usage.ts";

/** ORT-web's rate in a LoRA training step, one thread (bench/results/train.json, "ort-web f32": 23.7 GFLOP/s). */
const WEB_GFLOPS = "23.7";

export const planUsage = `fedflare plan --model DIR [--method TYPE] [--quant f32|int8|int4] [--batch 1] [--seq 64] [--gflops ${WEB_GFLOPS}]
  What a client holds for one step of the method (lora by default) on this model, for each client the
  method can be (LoRA: the whole model, then each cut with the layers above it on the client and the
  trunk at the endpoint): the tensors' bytes, what it reads of the checkpoint, onnxruntime's WASM heap
  and the isolate's predicted peak against a Worker's 128 MB, the step's FLOPs and CPU time at
  --gflops; names the lowest cut that fits. --quant defaults to how the checkpoint is stored, int8 for a
  float one (write it with fedflare quantize).`;

export async function plan(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      method: { type: "string", default: serverMethods.types()[0]! },
      quant: { type: "string" },
      batch: { type: "string", default: "1" },
      seq: { type: "string", default: "64" },
      gflops: { type: "string", default: WEB_GFLOPS },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model is required");
  if (!serverMethods.types().includes(values.method))
    throw new UsageError(`--method must be one of ${serverMethods.types().join(", ")}, got "${values.method}"`);
  if (values.quant !== undefined && !["f32", "int8", "int4"].includes(values.quant))
    throw new UsageError(`--quant must be f32, int8 or int4, got "${values.quant}"`);
  const config = await loadConfig(dirSource(values.model));
  const quant = (values.quant ?? config.quantization ?? "int8") as QuantMode;
  const settings = { quant, batch: positiveInt("batch", values.batch), seq: positiveInt("seq", values.seq) };
  const rate = positiveNumber("gflops", values.gflops) * 1e9;
  const planned = serverMethods
    .get(values.method)
    .planRows(config)
    .map((r) => ({ ...r, plan: planStep(config, r.footprint, settings) }));
  if (planned.length === 0) {
    console.log(`${values.method} runs the model away from the client (an endpoint or an API): a client holds no weights`);
    return;
  }
  const mib = (b: number) => fmt(b / MIB, 1);
  console.log(
    `${values.model}: ${config.numLayers} layers, hidden ${config.hiddenSize}, vocabulary ${config.vocabSize}; ` +
      `${values.method}, ${quant}, batch ${settings.batch} x ${settings.seq} tokens; MiB`,
  );
  printTable(
    ["client", "layers", "holds", "reads", "WASM heap", "peak", `fits ${WORKER_MEMORY_BYTES / MIB}`, "GFLOP/step", "s/step"],
    planned.map(({ label, footprint: f, plan: p }) => [
      label,
      f.layers.length === 1 ? String(f.layers[0]) : `${f.layers[0]}-${f.layers.at(-1)}`,
      mib(p.heldBytes),
      mib(p.readBytes),
      mib(p.wasmBytes),
      mib(p.peakBytes),
      p.fits ? "yes" : "no",
      fmt(p.flops / 1e9, 1),
      fmt(p.flops / rate, 2),
    ]),
  );
  if (planned.some((p) => !p.plan.fitted))
    console.log(
      "rows outside the fit (forward-only steps, float bases, whole tensors trained, more layers x tokens than it measured) " +
        "are extrapolated from it, and never refused at creation",
    );
  const cuts = planned.filter((p) => p.cut !== undefined);
  const lowest = cuts.find((p) => p.plan.fits);
  if (lowest) console.log(`lowest cut that fits: ${lowest.cut} (the client runs layers ${lowest.cut}-${config.numLayers - 1})`);
  else if (cuts.length)
    console.log(
      `no cut fits: even the last layer alone needs ${mib(cuts.at(-1)!.plan.peakBytes)} MiB (the head alone is ` +
        `${mib(config.vocabSize * config.hiddenSize)} MiB as int8)`,
    );
  else console.log(planned.some((p) => p.plan.fits) ? "fits a Worker" : "does not fit a Worker");
}
