import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DataError } from "../../src/data/errors.ts";
import { tokenizeExample, exampleBatch } from "../../src/data/examples.ts";
import { parseJsonl } from "../../src/data/jsonl.ts";
import { shuffled } from "../../src/data/lm-windows.ts";
import { splitEvery } from "../../src/data/split.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { LINEAR_MODULES, type LinearModule } from "../../src/engine/llama/names.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { loraPairs, loraScaling, writePeftAdapter } from "../../src/engine/lora/peft.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { heldOutLoss } from "../../src/engine/train/evaluate.ts";
import { adamW } from "../../src/engine/train/optimizer.ts";
import { TrainStep } from "../../src/engine/train/step.ts";
import { Trainer } from "../../src/engine/train/trainer.ts";
import { ENGINE_OPTIONS, pickQuant, pickRuntime } from "../engine-options.ts";
import { dirSource } from "../model-dir.ts";
import { number, positiveInt, positiveNumber } from "../numbers.ts";
import { UsageError } from "../usage.ts";
import { writeFiles } from "../write-files.ts";

export const trainUsage =
  `fedflare train --model DIR --data FILE.jsonl --out DIR [--r 8] [--alpha 16] [--targets q_proj,v_proj] ` +
  `[--rslora] [--dropout 0]
                [--steps 100] [--batch 8] [--lr 2e-3] [--max-tokens 128] [--eval-every 10] [--seed 0] [--quant f32|int8|int4]
  Trains a LoRA adapter on JSONL records {"text"} or {"prompt","completion"} (loss on the completion only);
  every --eval-every-th record is held out. Writes a PEFT adapter folder and training_log.json to --out.`;

export async function train(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...ENGINE_OPTIONS,
      data: { type: "string" },
      out: { type: "string" },
      r: { type: "string", default: "8" },
      alpha: { type: "string", default: "16" },
      targets: { type: "string", default: "q_proj,v_proj" },
      rslora: { type: "boolean", default: false },
      dropout: { type: "string", default: "0" },
      steps: { type: "string", default: "100" },
      batch: { type: "string", default: "8" },
      lr: { type: "string", default: "2e-3" },
      "max-tokens": { type: "string", default: "128" },
      "eval-every": { type: "string", default: "10" },
      seed: { type: "string", default: "0" },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model DIR is required");
  if (!values.data) throw new UsageError("--data FILE.jsonl is required");
  if (!values.out) throw new UsageError("--out DIR is required");
  const modules = values.targets.split(",").map((t) => t.trim());
  for (const m of modules)
    if (!(LINEAR_MODULES as readonly string[]).includes(m))
      throw new UsageError(`--targets: "${m}" is not one of ${LINEAR_MODULES.join(", ")}`);
  const r = positiveInt("r", values.r);
  const dropout = number("dropout", values.dropout, 0, 0.9);
  const alpha = positiveNumber("alpha", values.alpha);
  const steps = positiveInt("steps", values.steps);
  const batchSize = positiveInt("batch", values.batch);
  const lr = positiveNumber("lr", values.lr);
  const maxTokens = positiveInt("max-tokens", values["max-tokens"]);
  const evalEvery = positiveInt("eval-every", values["eval-every"]);
  const seed = positiveInt("seed", values.seed, 0);
  const runtime = pickRuntime(values.runtime, values.threads);
  const quant = pickQuant(values.quant);

  const { config, weights, tokenizer } = await loadModel(dirSource(values.model));
  const eos = config.eosTokenIds[0];
  if (eos === undefined) throw new UsageError(`${values.model}/config.json has no eos_token_id, which training needs to end each example`);
  const records = parseJsonl(readFileSync(values.data, "utf8"), values.data);
  const { train: trainRecords, heldOut } = splitEvery(records, evalEvery);
  if (heldOut.length === 0 || trainRecords.length === 0)
    throw new DataError(
      "dataset_too_small",
      `${values.data}: ${records.length} records leave none to ${heldOut.length ? "train on" : "hold out"} with --eval-every ${evalEvery}`,
    );
  const tokenized = (xs: typeof records) => xs.map((x) => tokenizeExample(x, tokenizer, eos, Math.min(maxTokens, config.maxPositions)));
  const trainSet = tokenized(trainRecords);
  const heldSet = tokenized(heldOut);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(`${values.data}: ${trainSet.length} training and ${heldSet.length} held-out records`);

  const scaling = loraScaling({ r, alpha, useRslora: values.rslora });
  const spec = { lora: { r, scaling, modules: modules as LinearModule[], dropout, seed } };
  const pairsOf = (params: ReadonlyMap<string, Float32Array>) => loraPairs(params, r, scaling);
  const evaluate = async (params: ReadonlyMap<string, Float32Array> | null) => {
    const model = await ForwardModel.create(runtime, config, weights, {
      kind: "forward",
      quant,
      nll: true,
      ...(params ? { lora: pairsOf(params) } : {}),
    });
    const result = await heldOutLoss(model, heldSet);
    await model.release();
    return result.loss;
  };
  const before = await evaluate(null);
  log(`held-out loss of the base model: ${before.toFixed(4)}`);

  const params = initLoraParams(config, r, spec.lora.modules, seed);
  const step = await TrainStep.create(runtime, config, weights, { kind: "train", spec, quant });
  const trainer = new Trainer(step, params, {
    optimizer: adamW({ weightDecay: 0 }),
    schedule: { lr, warmupSteps: Math.min(10, Math.floor(steps / 10)), totalSteps: steps },
    clip: 1,
  });
  const uniform = seededUniform(seed);
  let order: typeof trainSet = [];
  const curve: { step: number; loss: number }[] = [];
  const started = Date.now();
  for (let s = 0; s < steps; s++) {
    if (order.length < batchSize) order = [...order, ...shuffled(trainSet, uniform)];
    const { loss } = await trainer.update([exampleBatch(order.splice(0, Math.min(batchSize, trainSet.length)))]);
    curve.push({ step: s + 1, loss });
    if ((s + 1) % 10 === 0 || s + 1 === steps)
      log(`step ${s + 1}/${steps}  loss ${loss.toFixed(4)}  ${((Date.now() - started) / (s + 1)).toFixed(0)} ms/step`);
  }
  await step.release();
  const after = await evaluate(params);
  log(`held-out loss with the adapter: ${after.toFixed(4)}`);

  const adapter = writePeftAdapter({
    config: { r, alpha, targetModules: spec.lora.modules, dropout, useRslora: values.rslora, baseModel: values.model },
    pairs: pairsOf(params),
  });
  const summary = {
    heldout_loss_before: before,
    heldout_loss_after: after,
    steps,
    train_records: trainSet.length,
    heldout_records: heldSet.length,
    seconds: (Date.now() - started) / 1000,
  };
  writeFiles(values.out, [...Object.entries(adapter), ["training_log.json", `${JSON.stringify({ ...summary, curve })}\n`]]);
  log(`wrote ${join(values.out, "adapter_model.safetensors")}`);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
