// A FLoRA client's round (src/fl/methods/lora/flora.ts): the version's factors with fresh ones stacked after
// them, the version's ranks frozen by the gradient mask, and the fresh factors alone taken back out.
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { graphName } from "../../src/engine/lora/peft.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import type { LoraConfig } from "../../src/fl/methods/lora/config.ts";
import { floraMask, floraStart, freshFactors } from "../../src/fl/methods/lora/flora.ts";
import { tinyConfig } from "../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const m = { type: "lora", r: 3, alpha: 6, targetModules: ["q_proj"], dropout: 0, rslora: false, fromLayer: 0 } as LoraConfig;
const u = seededUniform(4);
const version = (() => {
  const params = initLoraParams(config, 3, ["q_proj"], 1);
  const tensors = new Map([...params].map(([k, t]) => [`base_model.model.${k}`, normalSamples(u, t.length, 1)]));
  const shapes = new Map(
    [...tensors].map(([k, t]) => [k, k.endsWith(".lora_A.weight") ? [3, t.length / 3] : [t.length / 3, 3]] as [string, number[]]),
  );
  return { tensors, shapes, metadata: {} };
})();

describe("a FLoRA client's round", () => {
  it("stacks fresh factors after the version's, masks the version's ranks, and takes the fresh ones back", () => {
    const start = floraStart(m, config, version, 2, 9);
    const fresh = initLoraParams(config, 2, ["q_proj"], 9);
    for (const [name, t] of version.tensors) {
      const [rows, cols] = version.shapes.get(name)!;
      const s = start.tensors.get(name)!;
      const f = fresh.get(graphName(name))!;
      if (name.endsWith(".lora_A.weight")) {
        expect(start.shapes.get(name)).toEqual([5, cols]);
        expect(Array.from(s)).toEqual([...t, ...f]);
      } else {
        expect(start.shapes.get(name)).toEqual([rows, 5]);
        for (let o = 0; o < rows!; o++) {
          expect(Array.from(s.subarray(o * 5, o * 5 + 3))).toEqual(Array.from(t.subarray(o * 3, o * 3 + 3)));
          expect(Array.from(s.subarray(o * 5 + 3, o * 5 + 5))).toEqual(Array.from(f.subarray(o * 2, o * 2 + 2)));
        }
        // B's fresh columns start at zero, so the stacked model starts as the version's.
        expect(f.every((x) => x === 0)).toBe(true);
      }
    }
    // The mask zeroes the version's three ranks and keeps the fresh two.
    const mask = floraMask(3, 5);
    const ga = new Float32Array(5 * 4).fill(1);
    mask("x.lora_A.weight", ga);
    expect(Array.from(ga)).toEqual([...Array(12).fill(0), ...Array(8).fill(1)]);
    const gb = new Float32Array(2 * 5).fill(1);
    mask("x.lora_B.weight", gb);
    expect(Array.from(gb)).toEqual([0, 0, 0, 1, 1, 0, 0, 0, 1, 1]);
    // Taken back: the last two ranks of the trained stack, in rank-2 shapes.
    const params = new Map([...start.tensors].map(([k, t]) => [graphName(k), t.map((x, i) => x + i)]));
    const back = freshFactors(params, version, 2);
    for (const [name, t] of back.tensors) {
      const [rows, cols] = version.shapes.get(name)!;
      const p = params.get(graphName(name))!;
      if (name.endsWith(".lora_A.weight")) {
        expect(back.shapes.get(name)).toEqual([2, cols]);
        expect(Array.from(t)).toEqual(Array.from(p.subarray(3 * cols!)));
      } else {
        expect(back.shapes.get(name)).toEqual([rows, 2]);
        for (let o = 0; o < rows!; o++)
          expect(Array.from(t.subarray(o * 2, o * 2 + 2))).toEqual(Array.from(p.subarray(o * 5 + 3, o * 5 + 5)));
      }
    }
  });
});
