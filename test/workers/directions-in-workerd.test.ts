// The seeded direction generator inside workerd gives the same bits as in Node (the pinned vectors).
import { describe, expect, it } from "vitest";
import { direction } from "../../src/fl/directions.ts";
import { float32Bits, PINNED_DIRECTIONS } from "../fixtures/direction-vectors.ts";

describe("seeded directions inside workerd", () => {
  it.each(PINNED_DIRECTIONS)("match the pinned vector: $kind, seed $seed, $name from $from", ({ kind, seed, name, from, bits }) => {
    expect(float32Bits(direction(kind, seed, name, bits.length, from))).toEqual(bits);
  });
});
