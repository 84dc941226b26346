// `fedflare offsite`: the model owner's side of offsite-tuning. `emulator` writes what clients get (the
// emulator) and what the federation starts from (the adapter, version 0); `supply` gives that adapter to
// a federation; `plug-in` puts a trained adapter back into the full model.
import { readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadModel } from "../../src/engine/model-files.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { packWindows } from "../../src/data/lm-windows.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { distillEmulator } from "../../src/fl/methods/offsite/distill.ts";
import { emulatorWeights, offsiteLayout, plugIn } from "../../src/fl/methods/offsite/emulator.ts";
import { emulate, readAdapterFolder } from "../../src/fl/methods/offsite/files.ts";
import { initialAdapterRequest } from "../../src/fl/methods/offsite/supply.ts";
import { dirSource, readJsonFile, tokenizerFiles } from "../model-dir.ts";
import { sotuSplit } from "../corpora.ts";
import { DEFAULT_THREADS, positiveInt, positiveNumber, threads } from "../numbers.ts";
import { UsageError } from "../usage.ts";
import { writeFiles } from "../write-files.ts";

export const offsiteUsage =
  `fedflare offsite emulator --model DIR --bottom N --top N --middle N --out DIR [--distill-steps 0] ` +
  `[--distill-lr 1e-4] [--distill-weight 1]
  Writes DIR/emulator (the emulator for clients: the bottom and top layers and N uniformly kept middle
  layers, under their original indices) and DIR/adapter (the adapter, an offsite federation's version 0).
  With --distill-steps, the kept middle layers are first distilled from the full ones on the SOTU corpus.
fedflare offsite supply --coordinator URL --federation ID --adapter DIR   (FEDFLARE_OPERATOR_TOKEN)
  Gives an offsite federation its version 0, signed as the operator.
fedflare offsite plug-in --model DIR --adapter DIR --out DIR
  Writes the full model with a trained adapter (a version's adapter_model.safetensors and
  adapter_config.json) plugged in by layer index: every adapter tensor must be there, with its exact shape.`;

async function emulatorCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      bottom: { type: "string" },
      top: { type: "string" },
      middle: { type: "string" },
      out: { type: "string" },
      "distill-steps": { type: "string", default: "0" },
      "distill-lr": { type: "string", default: "1e-4" },
      "distill-weight": { type: "string", default: "1" },
      threads: { type: "string", default: DEFAULT_THREADS },
    },
    strict: true,
  });
  if (!values.model || !values.out) throw new UsageError("--model DIR and --out DIR are required");
  const split = {
    bottom: positiveInt("bottom", values.bottom ?? "", 0),
    top: positiveInt("top", values.top ?? "", 0),
    middle: positiveInt("middle", values.middle ?? "", 0),
  };
  const model = await loadModel(dirSource(values.model));
  const steps = positiveInt("distill-steps", values["distill-steps"], 0);
  let weights = model.weights;
  if (steps > 0) {
    // Distilled on the SOTU training addresses: the owner's own data, never the clients'.
    const layout = offsiteLayout(model.config.numLayers, split);
    const eos = model.config.eosTokenIds[0] ?? 0;
    // Enough addresses for one pass of steps x 8 windows of 128 tokens (tokenizing the corpus takes a while).
    const docs: number[][] = [];
    let tokens = 0;
    for (const address of sotuSplit().train) {
      if (tokens >= steps * 8 * 129) break;
      docs.push([...model.tokenizer.encode(address.text), eos]);
      tokens += docs.at(-1)!.length;
    }
    const windows = packWindows(docs, 128);
    const distilled = await distillEmulator(
      ortNodeRuntime(threads(values.threads)),
      model.config,
      model.weights,
      emulatorWeights(model.config, model.weights, layout),
      split,
      layout,
      windows,
      {
        steps,
        batch: 8,
        lr: positiveNumber("distill-lr", values["distill-lr"]),
        weight: positiveNumber("distill-weight", values["distill-weight"]),
        onStep: (s, loss, distill) => {
          if (s % 25 === 0 || s === steps)
            process.stderr.write(`distilling: step ${s}/${steps}  loss ${loss.toFixed(4)} (distillation ${distill.toFixed(4)})\n`);
        },
      },
    );
    // The emulator's middle is the distilled one; every other tensor is the full model's own.
    weights = new Map([...model.weights].map(([n, t]) => [n, distilled.get(n) ?? t]));
  }
  const out = emulate(model.config, weights, split, basename(resolve(values.model)), tokenizerFiles(values.model));
  writeFiles(join(values.out, "emulator"), out.emulator);
  writeFiles(join(values.out, "adapter"), out.adapter);
  process.stderr.write(
    `emulator layers ${JSON.stringify(out.description.emulator_layers)} of ${model.config.numLayers} in ${join(values.out, "emulator")}; ` +
      `adapter layers ${JSON.stringify(out.description.adapter_layers)} in ${join(values.out, "adapter")}\n`,
  );
}

async function supplyCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { coordinator: { type: "string" }, federation: { type: "string" }, adapter: { type: "string" } },
    strict: true,
  });
  if (!values.coordinator || !values.federation || !values.adapter)
    throw new UsageError("--coordinator URL, --federation ID and --adapter DIR are required");
  const token = process.env.FEDFLARE_OPERATOR_TOKEN;
  if (!token) throw new UsageError("set FEDFLARE_OPERATOR_TOKEN to the coordinator's operator token");
  const { path, ...init } = await initialAdapterRequest(
    values.federation,
    token,
    new Uint8Array(readFileSync(join(values.adapter, "adapter_model.safetensors"))),
  );
  if (!URL.canParse(values.coordinator) || !/^https?:$/.test(new URL(values.coordinator).protocol))
    throw new UsageError(`--coordinator is the coordinator's http(s) URL, got "${values.coordinator}"`);
  // The route below the coordinator's URL, any path it is served under kept.
  const url = `${values.coordinator.replace(/\/+$/, "")}${path}`;
  const res = await fetch(url, init).catch((e: Error) => {
    throw new UsageError(`cannot reach the coordinator at ${values.coordinator}: ${(e.cause as Error | undefined)?.message ?? e.message}`);
  });
  const text = await res.text();
  if (!res.ok) throw new UsageError(`the coordinator refused the adapter: ${res.status} ${text}`);
  process.stderr.write(`"${values.federation}" has its version 0; open its first round\n`);
}

async function plugInCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { model: { type: "string" }, adapter: { type: "string" }, out: { type: "string" } },
    strict: true,
  });
  if (!values.model || !values.adapter || !values.out) throw new UsageError("--model DIR, --adapter DIR and --out DIR are required");
  const model = await loadModel(dirSource(values.model));
  const { tensors, description } = readAdapterFolder(
    model.config,
    new Uint8Array(readFileSync(join(values.adapter, "adapter_model.safetensors"))),
    readJsonFile(values.adapter, "adapter_config.json"),
    values.adapter,
  );
  const weights = plugIn(model.config, model.weights, tensors, offsiteLayout(model.config.numLayers, description));
  const tokenizer = tokenizerFiles(values.model);
  writeFiles(
    values.out,
    hfModelFiles(model.config, weights, tokenizer.json, tokenizer.config ? { tokenizerConfig: tokenizer.config } : {}),
  );
  process.stderr.write(
    `wrote ${values.out}: ${basename(resolve(values.model))} with adapter layers ${JSON.stringify(description.adapter_layers)} from ` +
      `${values.adapter}\n`,
  );
}

const SUBCOMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  emulator: emulatorCommand,
  supply: supplyCommand,
  "plug-in": plugInCommand,
};

export async function offsite(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  const run = sub ? SUBCOMMANDS[sub] : undefined;
  if (!run) throw new UsageError(`offsite needs a subcommand: ${Object.keys(SUBCOMMANDS).join(", ")}`);
  await run(rest);
}
