// A LoRA method config as the PEFT adapter its versions are: one rank and scaling, or a rank and a scaling
// per module where its rank_pattern and alpha_pattern say so (src/engine/lora/peft.ts reads them as PEFT does).
import type { LoraPair } from "../../../engine/llama/graph.ts";
import { linearName, type LinearModule } from "../../../engine/llama/names.ts";
import { type AdapterConfig, adapterPairs, moduleLora } from "../../../engine/lora/peft.ts";
import type { LoraConfig } from "./config.ts";

/** The PEFT adapter config of a method's versions. */
export function adapterConfigOf(m: LoraConfig, baseModel: string | null = null, layers: number[] | null = null): AdapterConfig {
  return {
    r: m.r,
    alpha: m.alpha,
    targetModules: m.targetModules as LinearModule[],
    dropout: m.dropout,
    useRslora: m.rslora,
    baseModel,
    layers,
    ...(m.rankPattern && Object.keys(m.rankPattern).length ? { rankPattern: m.rankPattern } : {}),
    ...(m.alphaPattern && Object.keys(m.alphaPattern).length ? { alphaPattern: m.alphaPattern } : {}),
  };
}

/** A version's tensors as LoRA pairs, each at its module's rank and scaling. */
export const versionPairs = (m: LoraConfig, tensors: ReadonlyMap<string, Float32Array>): Map<string, LoraPair> =>
  adapterPairs(tensors, adapterConfigOf(m));

/** A module's rank under the method's rank_pattern. */
export const moduleRank = (m: LoraConfig, linear: string): number => moduleLora(adapterConfigOf(m), linear).r;

/**
 * Each module's rank (at most `cap`, a client's own rank) and scaling under the patterns, for the training graph;
 * none without patterns, so the graph and its kept session stay those of a plain adapter.
 */
export function patternModules(
  m: LoraConfig,
  layers: readonly number[],
  cap = Number.POSITIVE_INFINITY,
): Record<string, { r: number; scaling: number }> | undefined {
  const c = adapterConfigOf(m);
  if (!c.rankPattern && !c.alphaPattern) return undefined;
  return Object.fromEntries(
    layers.flatMap((l) =>
      c.targetModules.map((t) => {
        const { r, scaling } = moduleLora(c, linearName(l, t));
        return [linearName(l, t), { r: Math.min(r, cap), scaling }];
      }),
    ),
  );
}
