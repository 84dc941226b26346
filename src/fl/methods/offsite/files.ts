// The files offsite-tuning moves around: the emulator a model owner hands to clients (a Hugging Face
// folder holding only the emulator's layers, under their original indices, plus offsite.json), and an
// adapter folder (the adapter layers' tensors and the description), as the coordinator serves versions.
import type { LlamaConfig } from "../../../engine/config.ts";
import type { Weights } from "../../../engine/llama/graph.ts";
import { hfModelFiles } from "../../../engine/model-writer.ts";
import { floatOf } from "../../../engine/quantize.ts";
import { assertSameShapes, decodeTensorFile, encodeTensorFile } from "../../tensor-file.ts";
import { assertFinite, type TensorMap } from "../../tensors.ts";
import { describeOffsite, parseOffsiteDescription, type OffsiteDescription } from "./description.ts";
import { adapterShapes, emulatorWeights, offsiteLayout, type OffsiteSplit } from "./emulator.ts";

export type Files = Map<string, string | Uint8Array>;

export interface Emulated {
  description: OffsiteDescription;
  /** The emulator's Hugging Face folder (config.json of the full model) with offsite.json. */
  emulator: Files;
  /** Version 0: the owner's adapter layers as adapter_model.safetensors, and adapter_config.json. */
  adapter: Files;
}

export function emulate(
  c: LlamaConfig,
  full: Weights,
  split: OffsiteSplit,
  baseModel: string,
  tokenizer: { json: unknown; config?: Record<string, unknown> },
): Emulated {
  const layout = offsiteLayout(c.numLayers, split);
  const description = describeOffsite(baseModel, split, layout);
  const emulator = hfModelFiles(
    c,
    emulatorWeights(c, full, layout),
    tokenizer.json,
    tokenizer.config ? { tokenizerConfig: tokenizer.config } : {},
  );
  emulator.set("offsite.json", `${JSON.stringify(description, null, 2)}\n`);
  const shapes = adapterShapes(c, layout);
  const adapter = adapterFolder(new Map([...shapes.keys()].map((n) => [n, floatOf(full.get(n)!)])), c, description);
  return { description, emulator, adapter };
}

export function adapterFolder(tensors: TensorMap, c: LlamaConfig, description: OffsiteDescription): Files {
  const shapes = adapterShapes(c, offsiteLayout(c.numLayers, description));
  return new Map<string, string | Uint8Array>([
    ["adapter_model.safetensors", encodeTensorFile(tensors, shapes)],
    ["adapter_config.json", `${JSON.stringify(description, null, 2)}\n`],
  ]);
}

/** An adapter folder's tensors and description, checked against the model: every adapter tensor, its exact shape, finite. */
export function readAdapterFolder(
  c: LlamaConfig,
  safetensors: Uint8Array,
  configJson: unknown,
  where: string,
): { tensors: TensorMap; description: OffsiteDescription } {
  const description = parseOffsiteDescription(configJson, `${where}/adapter_config.json`);
  const file = decodeTensorFile(safetensors, `${where}/adapter_model.safetensors`);
  assertSameShapes(adapterShapes(c, offsiteLayout(c.numLayers, description)), file.shapes, `${where}/adapter_model.safetensors`);
  assertFinite(file.tensors, `${where}/adapter_model.safetensors`);
  return { tensors: file.tensors, description };
}
