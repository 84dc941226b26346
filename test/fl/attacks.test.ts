// The project's attacks (src/fl/attacks/): "a little is enough"'s z against the values in Baruch et al.
// 2019's formula (computed independently in the research notes), its vector against μ − zσ in float64, and
// the poisoned upload's tensors and claimed example count.
import { describe, expect, it } from "vitest";
import { seededUniform } from "../../src/engine/sampling.ts";
import { alieTensors, alieZ, poisonUpload } from "../../src/fl/attacks/model-poisoning.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";

describe("attacks", () => {
  it("a little is enough: z_max = Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f, and μ − zσ per coordinate", () => {
    for (const [n, f, z] of [
      [10, 2, 0.2533],
      [20, 4, 0.3853],
      [25, 5, 0.4677],
      [50, 12, 0.5828],
      [50, 5, 0.2019],
      [100, 20, 0.4959],
    ] as const)
      expect(alieZ(n, f)).toBeCloseTo(z, 4);
    expect(() => alieZ(10, 0)).toThrow(/colluders f is a whole number in \[1, n\)/);
    expect(() => alieZ(10, 6)).toThrow(/needs f ≤ ⌊n\/2⌋ colluders/);
    const honest = [
      [1, 2, 3],
      [3, 2, 1],
      [2, 2, 8],
    ].map((v) => new Map([["w", Float32Array.from(v)]]));
    const got = alieTensors(honest, 1.5).get("w")!;
    const want = [0, 1, 2].map((j) => {
      const xs = honest.map((h) => h.get("w")![j]!);
      const mean = xs.reduce((a, b) => a + b, 0) / 3;
      return mean - 1.5 * Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / 3);
    });
    got.forEach((x, j) => expect(x).toBeCloseTo(want[j]!, 5));
  });

  it("poisons an upload's tensors and claims the given example count", () => {
    const body = encodeTensorFile(new Map([["a", Float32Array.from([1, -2])]]), new Map([["a", [2]]]), {
      format: "pt",
      num_examples: "12",
      metrics: '{"train_loss":1}',
    });
    const flipped = decodeTensorFile(poisonUpload({ type: "sign-flip", scale: 4, examples: 1e9 }, body, seededUniform(1)), "x");
    expect([Array.from(flipped.tensors.get("a")!), flipped.metadata.num_examples, flipped.metadata.metrics]).toEqual([
      [-4, 8],
      "1000000000",
      '{"train_loss":1}',
    ]);
    const scaled = decodeTensorFile(poisonUpload({ type: "scale", factor: 100 }, body, seededUniform(1)), "x");
    expect([Array.from(scaled.tensors.get("a")!), scaled.metadata.num_examples]).toEqual([[100, -200], "12"]);
    const noise = decodeTensorFile(poisonUpload({ type: "gaussian", std: 200 }, body, seededUniform(1)), "x").tensors.get("a")!;
    expect(noise).not.toEqual(Float32Array.from([1, -2]));
    expect(Math.max(...noise.map(Math.abs))).toBeGreaterThan(5);
  });
});
