import { describe, expect, it } from "vitest";
import { direction, philox4x32, streamOf } from "../../src/fl/directions.ts";
import { float32Bits, PINNED_DIRECTIONS } from "../fixtures/direction-vectors.ts";

describe("seeded directions", () => {
  it("run Philox4x32-10 as Random123's known-answer vectors give it", () => {
    const kat: [number[], number[], number[]][] = [
      [
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
      ],
      [
        [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
        [0xffffffff, 0xffffffff],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
      ],
      [
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
      ],
    ];
    for (const [counter, key, want] of kat) expect([...philox4x32(counter, key)]).toEqual(want);
  });

  it.each(PINNED_DIRECTIONS)("match the pinned vector: $kind, seed $seed, $name from $from", ({ kind, seed, name, from, bits }) => {
    expect(float32Bits(direction(kind, seed, name, bits.length, from))).toEqual(bits);
  });

  it("do not depend on the order or the slicing in which elements are made", () => {
    for (const kind of ["gaussian", "rademacher"] as const) {
      const whole = direction(kind, 99, "w", 37);
      const pieces = [direction(kind, 99, "w", 5, 0), direction(kind, 99, "w", 1, 5), direction(kind, 99, "w", 31, 6)];
      expect(Float32Array.from(pieces.flatMap((p) => [...p]))).toEqual(whole);
      const backwards = Array.from({ length: 37 }, (_, k) => direction(kind, 99, "w", 1, 36 - k)[0]!).reverse();
      expect(Float32Array.from(backwards)).toEqual(whole);
    }
  });

  it("are standard Gaussian / balanced signs, and independent across seeds and tensor names", () => {
    const n = 200_000;
    const g = direction("gaussian", 3, "a", n);
    const mean = g.reduce((s, x) => s + x, 0) / n;
    const variance = g.reduce((s, x) => s + x * x, 0) / n - mean ** 2;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.02);
    expect(g.filter((x) => Math.abs(x) > 1.96).length / n).toBeCloseTo(0.05, 2);
    const r = direction("rademacher", 3, "a", n);
    expect(r.every((x) => x === 1 || x === -1)).toBe(true);
    expect(Math.abs(r.reduce((s, x) => s + x, 0) / n)).toBeLessThan(0.01);
    const corr = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0) / n;
    expect(Math.abs(corr(g, direction("gaussian", 4, "a", n)))).toBeLessThan(0.01);
    expect(Math.abs(corr(g, direction("gaussian", 3, "b", n)))).toBeLessThan(0.01);
    expect(streamOf("a")).not.toBe(streamOf("b"));
  });

  it("refuses seeds that are not unsigned 32-bit integers", () => {
    expect(() => direction("gaussian", -1, "a", 3)).toThrow(/unsigned 32-bit/);
    expect(() => direction("gaussian", 2 ** 32, "a", 3)).toThrow(/unsigned 32-bit/);
    expect(() => direction("gaussian", 1.5, "a", 3)).toThrow(/unsigned 32-bit/);
  });
});
