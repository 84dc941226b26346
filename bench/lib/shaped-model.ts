// Models with the exact shapes of published checkpoints (bench/lib/published-configs.ts) and random weights,
// written pre-quantized a tensor at a time by the project's own writer: nothing is downloaded, and a 1B
// shape never exists in float32 in memory. The tokenizer is the shipped default model's (its ids fit
// every vocabulary here).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeQuantizedModel } from "../../cli/quantized-model.ts";
import { type LlamaConfig, parseLlamaConfig } from "../../src/engine/config.ts";
import { initLlamaTensors } from "../../src/engine/llama/init.ts";
import type { StoredQuant } from "../../src/engine/quantized-checkpoint.ts";
import { PUBLISHED_CONFIGS } from "./published-configs.ts";

export type ShapeName = keyof typeof PUBLISHED_CONFIGS;
export const SHAPES = Object.keys(PUBLISHED_CONFIGS) as ShapeName[];
const TOKENIZER_FROM = "models/fedflare-sotu-4m";

export function shapeConfig(name: ShapeName): LlamaConfig {
  return parseLlamaConfig(PUBLISHED_CONFIGS[name]);
}

/** The folder of `name`'s shape at `mode` under `root`, written once (reused when its files exist). */
export async function shapedModel(root: string, name: ShapeName, mode: StoredQuant, log = (_: string) => {}): Promise<string> {
  const dir = join(root, `${name.replace("/", "--")}-${mode}`);
  if (existsSync(join(dir, "config.json"))) return dir;
  const config = shapeConfig(name);
  log(`writing ${name}'s shape with random ${mode} weights to ${dir}`);
  await writeQuantizedModel(dir, config, mode, initLlamaTensors(config, { seed: 1 }), { tokenizerFrom: TOKENIZER_FROM });
  return dir;
}
