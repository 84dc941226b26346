import { parseArgs } from "node:util";
import { MIB, planStep, WORKER_MEMORY_BYTES, type Footprint } from "../../src/engine/client-plan.ts";
import { loadConfig } from "../../src/engine/model-files.ts";
import type { QuantMode } from "../../src/engine/quantize.ts";
import type { MethodConfig } from "../../src/fl/methods/method.ts";
import { serverMethods } from "../../src/fl/methods/server.ts";
import { fmt, printTable } from "../../src/report/table.ts";
import { dirSource } from "../model-dir.ts";
import { positiveInt, positiveNumber } from "../numbers.ts";
import { UsageError } from "../usage.ts";

/** ORT-web's rate in a LoRA training step, one thread (bench/results/train.json, "ort-web f32": 23.7 GFLOP/s). */
const WEB_GFLOPS = "23.7";

export const planUsage = `fedflare plan --model DIR [--method split|lora|offsite|fedkseed|fedbpt|discrete] [--quant f32|int8|int4]
             [--batch 1] [--seq 64] [--gflops ${WEB_GFLOPS}]
  What a client holds for one step of the method on this model, for each cut where it has one (split
  LoRA: the layers above each cut, the trunk below at the endpoint): the tensors' bytes, what it reads
  of the checkpoint, onnxruntime's WASM heap and the isolate's predicted peak against a Worker's 128 MB,
  and the step's FLOPs and CPU time at --gflops; names the lowest cut that fits. --quant defaults to how
  the checkpoint is stored, int8 for a float one (write it with fedflare quantize).`;

/** Each row's method config, as far as its footprint reads it. */
function rows(method: string, layers: number): { label: string; type: string; config: Record<string, unknown>; cut?: number }[] {
  const lora = { type: "lora", r: 8, alpha: 16, targetModules: ["q_proj", "v_proj"] };
  if (method === "split")
    return Array.from({ length: layers - 1 }, (_, i) => ({
      label: String(i + 1),
      type: "lora",
      config: { ...lora, fromLayer: i + 1 },
      cut: i + 1,
    }));
  if (method === "lora") return [{ label: "-", type: "lora", config: { ...lora, fromLayer: 0 } }];
  if (method === "offsite")
    return [
      { label: "-", type: "offsite", config: { type: "offsite", bottom: 1, top: 1, middle: Math.max(0, Math.floor((layers - 2) / 2)) } },
    ];
  return [{ label: "-", type: method, config: { type: method } }];
}

export async function plan(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      method: { type: "string", default: "split" },
      quant: { type: "string" },
      batch: { type: "string", default: "1" },
      seq: { type: "string", default: "64" },
      gflops: { type: "string", default: WEB_GFLOPS },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model is required");
  const methods = ["split", "lora", "offsite", "fedkseed", "fedbpt", "discrete"];
  if (!methods.includes(values.method)) throw new UsageError(`--method must be one of ${methods.join(", ")}, got "${values.method}"`);
  if (values.quant !== undefined && !["f32", "int8", "int4"].includes(values.quant))
    throw new UsageError(`--quant must be f32, int8 or int4, got "${values.quant}"`);
  const config = await loadConfig(dirSource(values.model));
  const quant = (values.quant ?? config.quantization ?? "int8") as QuantMode;
  const settings = { quant, batch: positiveInt("batch", values.batch), seq: positiveInt("seq", values.seq) };
  const rate = positiveNumber("gflops", values.gflops) * 1e9;
  const placement = values.method === "split" ? "endpoint" : values.method === "discrete" ? "api" : "local";
  const planned = rows(values.method, config.numLayers).flatMap((r) => {
    // Only the fields a footprint reads are set: the layers it runs, not how it trains them.
    const f: Footprint | undefined = serverMethods.get(r.type).footprints(r.config as unknown as MethodConfig, config)[placement];
    return f ? [{ ...r, f, plan: planStep(config, f, settings) }] : [];
  });
  if (planned.length === 0) {
    console.log(
      `${values.method} runs the model at ${placement === "api" ? "a completions API" : "the endpoint"}: a client holds no weights`,
    );
    return;
  }
  const mib = (b: number) => fmt(b / MIB, 1);
  console.log(
    `${values.model}: ${config.numLayers} layers, hidden ${config.hiddenSize}, vocabulary ${config.vocabSize}; ` +
      `${values.method}, ${quant}, ` +
      `batch ${settings.batch} x ${settings.seq} tokens; MiB`,
  );
  printTable(
    ["cut", "client layers", "holds", "reads", "WASM heap", "peak", `fits ${WORKER_MEMORY_BYTES / MIB}`, "GFLOP/step", "s/step"],
    planned.map(({ label, f, plan: p }) => [
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
  const fitting = planned.filter((p) => p.plan.fits);
  if (values.method !== "split") console.log(fitting.length ? "fits a Worker" : "does not fit a Worker");
  else if (fitting.length)
    console.log(`lowest cut that fits: ${fitting[0]!.cut} (the client runs layers ${fitting[0]!.cut}-${config.numLayers - 1})`);
  else
    console.log(
      `no cut fits: even one layer needs ${mib(planned.at(-1)!.plan.peakBytes)} MiB (the head alone holds ` +
        `${mib(config.vocabSize * config.hiddenSize)} MiB as int8)`,
    );
}
