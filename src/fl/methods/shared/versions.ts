// Helpers the methods' server sides share: a version 0 from named tensors, the description served
// beside every version, a config refusal in the method's one error type, and a whole-model footprint.
import type { LlamaConfig } from "../../../engine/config.ts";
import { allLayers } from "../../../engine/llama/names.ts";
import type { Footprint } from "../../../engine/client-plan.ts";
import { encodeTensorFile } from "../../tensor-file.ts";
import { MethodError } from "../errors.ts";

/** Version 0 as safetensors, from named float32 tensors and their shapes. */
export function tensorVersion(tensors: readonly [string, Float32Array, number[]][]): Uint8Array {
  return encodeTensorFile(new Map(tensors.map(([n, t]) => [n, t])), new Map(tensors.map(([n, , s]) => [n, s])));
}

/** adapter_config.json's text: what a method's versions hold, for a reader that has only the files. */
export const describe = (description: object): string => `${JSON.stringify(description, null, 2)}\n`;

/** Runs `fn`, answering any library error it throws as MethodError `method_invalid` about `field`. */
export function configured<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof MethodError) throw e;
    if (e instanceof Error) throw new MethodError("method_invalid", `${field}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** A client running every layer of the model on its own weights: training (a gradient method) or forward passes only. */
export function wholeModel(model: LlamaConfig, trains: boolean): Footprint {
  return { layers: allLayers(model), embeds: true, trains };
}
