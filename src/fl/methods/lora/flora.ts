// A FLoRA client's round (Wang et al. 2024; method.hetero.rule "flora"): fresh factors of the client's rank r
// (A as PEFT initialises it, seeded by the client and the round; B zero) stacked after the version's R ranks,
// trained with the version's part frozen, so the client's model is W0 + s(B_G A_G + B_k A_k) and only its own
// factors move; it uploads those factors themselves (the aggregator stacks them: src/fl/hetero/aggregation.ts).
import type { LlamaConfig } from "../../../engine/config.ts";
import type { LinearModule } from "../../../engine/llama/names.ts";
import { initLoraParams } from "../../../engine/lora/init.ts";
import { graphName } from "../../../engine/lora/peft.ts";
import type { TensorFile } from "../../tensor-file.ts";
import type { TensorMap } from "../../tensors.ts";
import type { LoraConfig } from "./config.ts";

const A = ".lora_A.weight";

/** The version's factors (rank R) with fresh ones of rank r after them: A's rows, B's columns. */
export function floraStart(m: LoraConfig, c: LlamaConfig, version: TensorFile, r: number, seed: number): TensorFile {
  const fresh = initLoraParams(c, r, m.targetModules as LinearModule[], seed, m.fromLayer);
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, t] of version.tensors) {
    const [rows, cols] = version.shapes.get(name) as [number, number];
    const f = fresh.get(graphName(name))!;
    if (name.endsWith(A)) {
      tensors.set(name, Float32Array.from([...t, ...f]));
      shapes.set(name, [rows + r, cols]);
    } else {
      const out = new Float32Array(rows * (cols + r));
      for (let o = 0; o < rows; o++) {
        out.set(t.subarray(o * cols, (o + 1) * cols), o * (cols + r));
        out.set(f.subarray(o * r, (o + 1) * r), o * (cols + r) + cols);
      }
      tensors.set(name, out);
      shapes.set(name, [rows, cols + r]);
    }
  }
  return { tensors, shapes, metadata: version.metadata };
}

/** Zeroes the gradient of the version's first R ranks of each factor (of R + r in all). */
export function floraMask(R: number, total: number): (name: string, grad: Float32Array) => void {
  return (name, grad) => {
    if (name.endsWith(A)) grad.fill(0, 0, (grad.length / total) * R);
    else for (let o = 0; o < grad.length / total; o++) grad.fill(0, o * total, o * total + R);
  };
}

/** The trained fresh factors (the last r ranks of each), by the version's tensor names, in their shapes. */
export function freshFactors(params: TensorMap, version: TensorFile, r: number): { tensors: TensorMap; shapes: Map<string, number[]> } {
  const tensors: TensorMap = new Map();
  const shapes = new Map<string, number[]>();
  for (const name of version.tensors.keys()) {
    const [rows, cols] = version.shapes.get(name) as [number, number];
    const p = params.get(graphName(name))!;
    if (name.endsWith(A)) {
      tensors.set(name, p.slice(rows * cols));
      shapes.set(name, [r, cols]);
    } else {
      const total = cols + r;
      tensors.set(
        name,
        Float32Array.from({ length: rows * r }, (_, i) => p[Math.floor(i / r) * total + cols + (i % r)]!),
      );
      shapes.set(name, [rows, r]);
    }
  }
  return { tensors, shapes };
}
