import { statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig, openWeights } from "../../src/engine/model-files.ts";
import type { BaseTensor } from "../../src/engine/quantize.ts";
import { dirSource } from "../model-dir.ts";
import { writeQuantizedModel } from "../quantized-model.ts";
import { UsageError } from "../usage.ts";

export const quantizeUsage = `fedflare quantize --model DIR --quant int8|int4 --out DIR
  Writes the model pre-quantized, once, for clients that cannot hold it in float32: linears int8 per
  output channel or int4 in blocks of 32, the embedding and an untied head int8 per row, norms and
  biases float32, in compressed-tensors' "pack-quantized" layout (config.json's quantization_config),
  which vLLM and transformers also load. Reads and writes a tensor at a time.`;

export async function quantize(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { model: { type: "string" }, quant: { type: "string" }, out: { type: "string" } },
    strict: true,
  });
  if (!values.model || !values.out) throw new UsageError("--model and --out are required");
  if (values.quant !== "int8" && values.quant !== "int4") throw new UsageError(`--quant must be int8 or int4, got "${values.quant ?? ""}"`);
  const source = dirSource(values.model);
  const config = await loadConfig(source);
  if (config.quantization) throw new UsageError(`${values.model} is already quantized (${config.quantization})`);
  const { shapes, read } = await openWeights(source, config);
  async function* tensors(): AsyncGenerator<[string, BaseTensor]> {
    for (const name of shapes.keys()) yield [name, await read(name)];
  }
  const { bytes } = await writeQuantizedModel(values.out, config, values.quant, tensors(), {
    tokenizerFrom: values.model,
    onTensor: (done, total) => {
      if (process.stderr.isTTY || done === total) process.stderr.write(`\rquantized ${done}/${total} tensors${done === total ? "\n" : ""}`);
    },
  });
  const before = statSync(join(values.model, "model.safetensors"), { throwIfNoEntry: false })?.size;
  console.log(
    `${values.out}: ${values.quant}, model.safetensors ${(bytes / 2 ** 20).toFixed(1)} MiB` +
      (before ? ` (was ${(before / 2 ** 20).toFixed(1)} MiB)` : ""),
  );
}
