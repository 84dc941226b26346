import { describe, expect, it } from "vitest";
import { argmax, sampleToken, seededUniform, topK } from "../../src/engine/sampling.ts";

describe("sampleToken", () => {
  const logits = [0, Math.log(6), Math.log(3), Math.log(1)]; // probs 0.1, 0.6, 0.3, 0.1 of 10... (1,6,3,1)/11

  it("is greedy at temperature 0", () => {
    expect(sampleToken(logits, { temperature: 0, topP: 1 }, () => 0.99)).toBe(1);
    expect(argmax([3, 7, 7, 1])).toBe(1);
  });

  it("samples in proportion to softmax(logits / T)", () => {
    const u = seededUniform(42);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[sampleToken(logits, { temperature: 1, topP: 1 }, u)]!++;
    [1, 6, 3, 1].forEach((w, i) => expect(counts[i]! / 20000).toBeCloseTo(w / 11, 1));
  });

  it("keeps only the nucleus whose mass reaches top_p", () => {
    const u = seededUniform(1);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(sampleToken(logits, { temperature: 1, topP: 0.8 }, u));
    expect([...seen].sort()).toEqual([1, 2]); // 6/11 < 0.8 <= 9/11
  });
});

describe("topK", () => {
  it("returns the k largest, largest first, ties by index", () => {
    expect(topK([3, 9, 1, 9, 5], 3)).toEqual([
      [1, 9],
      [3, 9],
      [4, 5],
    ]);
    expect(topK([1, 2], 0)).toEqual([]);
    expect(topK([1, 2], 5)).toEqual([
      [1, 2],
      [0, 1],
    ]);
  });
});
