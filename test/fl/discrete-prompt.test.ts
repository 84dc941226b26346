import { describe, expect, it } from "vitest";
import { seededUniform } from "../../src/engine/sampling.ts";
import {
  averageDistributions,
  pmiPhrases,
  policyGradientStep,
  projectToSimplex,
  samplePrompt,
} from "../../src/fl/methods/discrete/policy-gradient.ts";

describe("discrete prompt learning", () => {
  it("projects onto the simplex: points on it stay, others land on the nearest point", () => {
    expect(projectToSimplex([0.2, 0.3, 0.5])).toEqual([0.2, 0.3, 0.5].map((x) => expect.closeTo(x, 12)));
    expect(projectToSimplex([1, 1, 0])).toEqual([0.5, 0.5, 0]);
    expect(projectToSimplex([2, 0, -1])).toEqual([1, 0, 0]);
    const p = projectToSimplex([0.9, -0.3, 0.6, 0.1]);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(p.every((x) => x >= 0)).toBe(true);
  });

  it("learns, by the policy gradient, to put each slot's mass on the phrase of lowest loss", () => {
    // Loss: 0 when slot 0 picks phrase 2 and slot 1 picks phrase 0, else 1 per wrong slot.
    const loss = (prompt: readonly number[]) => Number(prompt[0] !== 2) + Number(prompt[1] !== 0);
    let dist = [Array(4).fill(0.25), Array(3).fill(1 / 3)];
    const u = seededUniform(7);
    let queries = 0;
    for (let step = 0; step < 150; step++) {
      const samples = Array.from({ length: 8 }, () => {
        const prompt = samplePrompt(dist, [u(), u()]);
        queries++;
        return { prompt, loss: loss(prompt) };
      });
      dist = policyGradientStep(dist, samples, 0.05);
    }
    expect(dist[0]![2]).toBeGreaterThan(0.9);
    expect(dist[1]![0]).toBeGreaterThan(0.9);
    expect(queries).toBe(1200);
  });

  it("averages clients' distributions by their examples", () => {
    expect(
      averageDistributions([
        { distributions: [[1, 0]], numExamples: 1 },
        { distributions: [[0, 1]], numExamples: 3 },
      ]),
    ).toEqual([[0.25, 0.75]]);
  });

  it("mines the words most informative of a label", () => {
    const items = [
      ...Array.from({ length: 6 }, (_, i) => ({ prompt: `win money now offer ${i} free`, label: "spam" })),
      ...Array.from({ length: 6 }, (_, i) => ({ prompt: `meeting notes attached ${i} thanks`, label: "ham" })),
      ...Array.from({ length: 6 }, () => ({ prompt: "hello there", label: "spam" })),
      ...Array.from({ length: 6 }, () => ({ prompt: "hello there", label: "ham" })),
    ];
    const top = pmiPhrases(items, 6);
    expect(top).toHaveLength(6);
    for (const w of top) expect(["win", "money", "now", "offer", "free", "meeting", "notes", "attached", "thanks"]).toContain(w);
    expect(top).not.toContain("hello");
  });
});
