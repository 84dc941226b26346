// Whole-model gradient checks: the training graph's float32 gradients (ONNX Runtime) against central
// finite differences of the float64 reference model, for every parameterisation on every base.
import { describe, expect, it } from "vitest";
import type { TrainSpec } from "../../../src/engine/llama/graph.ts";
import { EMBED } from "../../../src/engine/llama/names.ts";
import { normalSamples } from "../../../src/engine/llama/init.ts";
import type { LoraPair } from "../../../src/engine/llama/graph.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { seededUniform } from "../../../src/engine/sampling.ts";
import { TrainStep, type TrainBatch } from "../../../src/engine/train/step.ts";
import { effectiveWeights } from "../../fixtures/quantized.ts";
import { tinyConfig, tinyLora, tinyWeights } from "../../fixtures/tiny-llama.ts";
import { referenceHidden, referenceLoss } from "../../reference/llama-f64.ts";

const config = tinyConfig({ hidden: 64, intermediate: 96, heads: 4, kvHeads: 2, layers: 2 });
const weights = tinyWeights(config, 17);
const ids = [
  [1, 40, 41, 42, 43],
  [1, 77, 78, 0, 0],
];
const mask = [
  [1, 1, 1, 1, 1],
  [1, 1, 1, 0, 0],
];
const targets = ids.map((r) => [...r.slice(1), 0]);
// Mean NLL over the predicted (real, non-final) positions.
const predicted = mask.map((r) => r.map((m, t): number => (m && r[t + 1] ? 1 : 0)));
const count = predicted.flat().reduce((a, b) => a + b, 0);
const batch: TrainBatch = { ids, mask, targets, lossWeights: predicted.map((r) => r.map((p) => p / count)) };

const MODULES = ["q_proj", "v_proj", "down_proj"] as const;
const FULL = [
  "model.layers.0.input_layernorm.weight",
  "model.layers.1.mlp.down_proj.weight",
  "model.layers.0.self_attn.k_proj.weight",
  EMBED,
  "model.norm.weight",
];
const SPECS: [string, TrainSpec][] = [
  ["LoRA r=4 on q,v,down", { lora: { r: 4, scaling: 2, modules: [...MODULES] } }],
  ["full fine-tuning of chosen tensors", { full: FULL }],
  ["a soft prompt of 3 tokens", { softPromptTokens: 3 }],
];

/** The initial trainable values: random LoRA pairs (B non-zero), the model's own tensors, a random prompt. */
function initialParams(spec: TrainSpec): Map<string, Float32Array> {
  const p = new Map<string, Float32Array>();
  if (spec.lora)
    for (const [name, pair] of tinyLora(config, [...MODULES], 4, 8))
      p.set(`${name}.lora_A.weight`, pair.a).set(`${name}.lora_B.weight`, pair.b);
  for (const name of spec.full ?? []) p.set(name, Float32Array.from(weights.get(name)!));
  if (spec.softPromptTokens) p.set("soft_prompt", normalSamples(seededUniform(5), spec.softPromptTokens * config.hiddenSize, 0.5));
  return p;
}

/** The reference loss with the trainable values `p` on the (dequantized) base. */
function lossAt(spec: TrainSpec, base: Map<string, Float32Array>, p: Map<string, Float32Array>): number {
  const w = new Map(base);
  for (const name of spec.full ?? []) w.set(name, p.get(name)!);
  let lora: Map<string, LoraPair> | undefined;
  if (spec.lora) {
    lora = new Map();
    for (const name of tinyLora(config, [...MODULES], 4, 8).keys())
      lora.set(name, { a: p.get(`${name}.lora_A.weight`)!, b: p.get(`${name}.lora_B.weight`)!, r: 4, scaling: spec.lora.scaling });
  }
  const n = spec.softPromptTokens ?? 0;
  const padRows = <T>(rows: readonly (readonly T[])[], fill: T) => rows.flatMap((r) => [...Array<T>(n).fill(fill), ...r]);
  const input = { ids, mask, ...(n ? { prefix: p.get("soft_prompt")! } : {}) };
  return referenceLoss(config, w, input, padRows(targets, 0), padRows(batch.lossWeights, 0), lora);
}

/** Coordinates to check: seeded random ones, and for the embedding, entries of the rows the batch uses. */
function coordinates(name: string, size: number, seed: number): number[] {
  const u = seededUniform(seed);
  if (name === EMBED)
    return Array.from({ length: 10 }, (_, i) => ids.flat()[i % 10]! * config.hiddenSize + Math.floor(u() * config.hiddenSize));
  return Array.from({ length: 8 }, () => Math.floor(u() * size));
}

describe.each(["f32", "int8", "int4"] as const)("training-graph gradients on a %s base", (quant) => {
  it.each(SPECS)("%s: float32 gradients match float64 finite differences (rel ≤ 1e-3)", async (_, spec) => {
    const step = await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "train", spec, quant });
    const params = initialParams(spec);
    const { loss, grads } = await step.run(batch, params);
    const base = effectiveWeights(weights, config, quant, new Set(spec.full ?? []));
    expect(loss).toBeCloseTo(lossAt(spec, base, params), 4);
    const h = 1e-4;
    let seed = 0;
    for (const t of step.tensors) {
      const g = grads.get(t.name)!;
      let diff = 0;
      let norm = 0;
      for (const i of coordinates(t.name, g.length, ++seed)) {
        const at = (delta: number) => {
          const moved = new Map(params);
          const v = Float32Array.from(params.get(t.name)!);
          v[i]! += delta;
          return lossAt(spec, base, moved.set(t.name, v));
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        diff += (g[i]! - fd) ** 2;
        norm += fd ** 2;
      }
      expect(Math.sqrt(norm), `${t.name}: finite differences vanish`).toBeGreaterThan(1e-5);
      expect(Math.sqrt(diff) / Math.sqrt(norm), t.name).toBeLessThan(1e-3);
    }
    await step.release();
  });
});

describe("a distillation term (offsite-tuning's emulator distillation)", () => {
  it("adds weight × the normalised MSE to a teacher after a layer; float32 gradients match float64 finite differences", async () => {
    const full = ["model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"];
    const spec: TrainSpec = { full, distill: { afterLayer: 0, weight: 0.7 } };
    const H = config.hiddenSize;
    const teacher = normalSamples(seededUniform(9), ids.length * ids[0]!.length * H, 1);
    const real = mask.flat().reduce((a, b) => a + b, 0);
    const distillAt = (w: Map<string, Float32Array>) => {
      const h = referenceHidden(config, w, { ids, mask }, 1);
      let sum = 0;
      mask.flat().forEach((m, pos) => {
        let d = 0;
        let t2 = 0;
        for (let k = 0; k < H; k++) {
          d += (h[pos * H + k]! - teacher[pos * H + k]!) ** 2;
          t2 += teacher[pos * H + k]! ** 2;
        }
        sum += (m / real) * (d / t2);
      });
      return 0.7 * sum;
    };
    const totalAt = (p: Map<string, Float32Array>) => {
      const w = new Map(weights);
      for (const n of full) w.set(n, p.get(n)!);
      return lossAt({ full }, weights, p) + distillAt(w);
    };
    const step = await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "train", spec });
    const params = new Map(full.map((n) => [n, Float32Array.from(weights.get(n)!)]));
    const { loss, grads, distillLoss } = await step.run({ ...batch, teacherHidden: teacher }, params);
    expect(distillLoss).toBeCloseTo(distillAt(weights), 5);
    expect(distillLoss).toBeGreaterThan(0.1);
    expect(loss).toBeCloseTo(totalAt(params), 4);
    const h = 1e-4;
    for (const [k, name] of full.entries()) {
      const g = grads.get(name)!;
      let diff = 0;
      let norm = 0;
      for (const i of coordinates(name, g.length, 50 + k)) {
        const at = (delta: number) => {
          const v = Float32Array.from(params.get(name)!);
          v[i]! += delta;
          return totalAt(new Map(params).set(name, v));
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        diff += (g[i]! - fd) ** 2;
        norm += fd ** 2;
      }
      expect(Math.sqrt(norm), `${name}: finite differences vanish`).toBeGreaterThan(1e-5);
      expect(Math.sqrt(diff) / Math.sqrt(norm), name).toBeLessThan(1e-3);
    }
    await expect(step.run(batch, params)).rejects.toThrow(/teacher's hidden states/);
    await step.release();
  });
});
