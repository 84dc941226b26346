// Offsite-tuning (Xiao, Lin and Han 2023): the model owner keeps the full model and hands out an
// emulator — the bottom `bottom` and top `top` decoder layers (the adapter, which clients fine-tune)
// around a compressed middle, `middle` layers kept uniformly from the M in between (indices
// round(i (M-1) / (m-1)), so the first and last middle layers stay). Every tensor keeps its original
// layer index, so the trained adapter plugs back into the full model by name.
import type { LlamaConfig } from "../../../engine/config.ts";
import type { Weights } from "../../../engine/llama/graph.ts";
import { type BaseTensor, elementCount } from "../../../engine/quantize.ts";
import { EMBED, FINAL_NORM, LM_HEAD, expectedTensors } from "../../../engine/llama/names.ts";
import { FlError } from "../../errors.ts";
import { MethodError } from "../errors.ts";

export interface OffsiteSplit {
  bottom: number;
  top: number;
  /** Middle layers the emulator keeps. */
  middle: number;
}

export interface OffsiteLayout {
  /** The adapter's layers (bottom and top), original indices. */
  adapter: number[];
  /** The emulator's layers in order: adapter bottom, kept middle, adapter top. */
  emulator: number[];
}

export function offsiteLayout(numLayers: number, s: OffsiteSplit): OffsiteLayout {
  const M = numLayers - s.bottom - s.top;
  if (s.bottom < 0 || s.top < 0 || M < 0)
    throw new MethodError("method_invalid", `offsite split: bottom ${s.bottom} + top ${s.top} exceeds the model's ${numLayers} layers`);
  if (s.middle < 0 || s.middle > M || (s.middle === 1 && M > 1))
    throw new MethodError(
      "method_invalid",
      `offsite split: keep 0, or 2 to ${M} middle layers (the first and last are kept), not ${s.middle}`,
    );
  const kept =
    s.middle === M
      ? Array.from({ length: M }, (_, i) => i)
      : Array.from({ length: s.middle }, (_, i) => Math.round((i * (M - 1)) / (s.middle - 1)));
  const bottom = Array.from({ length: s.bottom }, (_, i) => i);
  const top = Array.from({ length: s.top }, (_, i) => numLayers - s.top + i);
  return { adapter: [...bottom, ...top], emulator: [...bottom, ...kept.map((k) => s.bottom + k), ...top] };
}

/** The adapter's tensors with their shapes: every tensor of its layers, under the full model's names. */
export function adapterShapes(c: LlamaConfig, layout: OffsiteLayout): Map<string, number[]> {
  return new Map([...expectedTensors(c, layout.adapter)].filter(([n]) => n.startsWith("model.layers.")));
}

export function adapterTensorNames(c: LlamaConfig, layout: OffsiteLayout): string[] {
  return [...adapterShapes(c, layout).keys()];
}

/** The emulator's weights: embedding, final norm, head, and its layers' tensors, under their original names. */
export function emulatorWeights(c: LlamaConfig, full: Weights, layout: OffsiteLayout): Map<string, BaseTensor> {
  const out = new Map<string, BaseTensor>();
  for (const name of expectedTensors(c, layout.emulator).keys()) out.set(name, full.get(name)!);
  for (const name of [EMBED, FINAL_NORM, LM_HEAD]) if (full.has(name)) out.set(name, full.get(name)!);
  return out;
}

/**
 * The full model with a trained adapter plugged in by original layer index, strictly: the adapter must
 * hold exactly the adapter's tensors, each with its full-model size; anything else fails.
 */
export function plugIn(
  c: LlamaConfig,
  full: Weights,
  adapter: ReadonlyMap<string, Float32Array>,
  layout: OffsiteLayout,
): Map<string, BaseTensor> {
  const names = adapterTensorNames(c, layout);
  for (const n of names) if (!adapter.has(n)) throw new FlError("tensor_mismatch", `plug-in: the adapter lacks "${n}"`);
  for (const [n, t] of adapter) {
    if (!names.includes(n))
      throw new FlError("tensor_mismatch", `plug-in: "${n}" is not an adapter tensor (adapter layers ${JSON.stringify(layout.adapter)})`);
    if (t.length !== elementCount(full.get(n)!))
      throw new FlError("tensor_mismatch", `plug-in: "${n}" has ${t.length} values, the full model ${elementCount(full.get(n)!)}`);
  }
  const out = new Map<string, BaseTensor>(full);
  for (const [n, t] of adapter) out.set(n, t);
  return out;
}
