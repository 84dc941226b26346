import { describe, expect, it } from "vitest";
import { dirichletPartitioner } from "../../src/data/partitioners/dirichlet.ts";
import { dirichletVariate, logGammaVariate } from "../../src/data/partitioners/gamma.ts";
import { iidPartitioner } from "../../src/data/partitioners/iid.ts";
import { naturalPartitioner } from "../../src/data/partitioners/natural.ts";
import type { Partitioner } from "../../src/data/partitioners/partitioner.ts";
import { seededUniform } from "../../src/engine/sampling.ts";

const partsOf = (p: Partitioner) => Array.from({ length: p.numPartitions }, (_, id) => p.loadPartition(id));
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
/** Every index 0..size-1 in exactly one partition. */
const expectCover = (parts: number[][], size: number) => expect(parts.flat().sort((a, b) => a - b)).toEqual(range(size));

/** 10 labels, 100 items each, interleaved. */
const labels = range(1000).map((i) => `c${i % 10}`);

/** Mean over partitions of the entropy (nats) of the partition's label distribution. */
function meanLabelEntropy(parts: number[][]): number {
  const entropies = parts.map((part) => {
    const counts = new Map<string, number>();
    for (const i of part) counts.set(labels[i]!, (counts.get(labels[i]!) ?? 0) + 1);
    return -[...counts.values()].reduce((h, c) => h + (c / part.length) * Math.log(c / part.length), 0);
  });
  return entropies.reduce((a, b) => a + b, 0) / entropies.length;
}

describe("IID partitioner", () => {
  it("cuts a seeded shuffle into near-equal parts, the same for a seed", () => {
    const parts = partsOf(iidPartitioner(14, { numPartitions: 4, seed: 7 }));
    expect(parts.map((p) => p.length)).toEqual([4, 4, 3, 3]);
    expectCover(parts, 14);
    expect(partsOf(iidPartitioner(14, { numPartitions: 4, seed: 7 }))).toEqual(parts);
    expect(partsOf(iidPartitioner(14, { numPartitions: 4, seed: 8 }))).not.toEqual(parts);
    expect(parts.flat()).not.toEqual(range(14));
  });

  it("refuses bad counts and ids with coded errors", () => {
    expect(() => iidPartitioner(10, { numPartitions: 0, seed: 0 })).toThrow(expect.objectContaining({ code: "partitioner_invalid" }));
    expect(() => iidPartitioner(3, { numPartitions: 4, seed: 0 })).toThrow(expect.objectContaining({ code: "dataset_too_small" }));
    const p = iidPartitioner(10, { numPartitions: 2, seed: 0 });
    for (const id of [-1, 2, 0.5]) expect(() => p.loadPartition(id)).toThrow(expect.objectContaining({ code: "partition_out_of_range" }));
  });

  it("hands out copies", () => {
    const p = iidPartitioner(4, { numPartitions: 2, seed: 0 });
    p.loadPartition(0).length = 0;
    expect(p.loadPartition(0)).toHaveLength(2);
  });
});

describe("Gamma and Dirichlet draws", () => {
  it.each([0.3, 1, 4.5])("Gamma(%s, 1) has mean and variance equal to its shape", (shape) => {
    const uniform = seededUniform(11);
    const xs = range(50_000).map(() => Math.exp(logGammaVariate(shape, uniform)));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1);
    expect(Math.abs(mean / shape - 1)).toBeLessThan(0.03);
    expect(Math.abs(variance / shape - 1)).toBeLessThan(0.1);
  });

  it("gives proportions summing to 1 even where Gamma draws underflow (alpha 0.01)", () => {
    const q = dirichletVariate(0.01, 20, seededUniform(3));
    expect(q.every((x) => x >= 0 && Number.isFinite(x))).toBe(true);
    expect(q.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });
});

describe("Dirichlet partitioner", () => {
  it("covers every index once and is the same for a seed", () => {
    const parts = partsOf(dirichletPartitioner(labels, { numPartitions: 10, alpha: 0.5, seed: 1 }));
    expectCover(parts, labels.length);
    expect(partsOf(dirichletPartitioner(labels, { numPartitions: 10, alpha: 0.5, seed: 1 }))).toEqual(parts);
    expect(partsOf(dirichletPartitioner(labels, { numPartitions: 10, alpha: 0.5, seed: 2 }))).not.toEqual(parts);
  });

  it("skews labels more as alpha decreases (Hsu et al. 2019)", () => {
    const entropy = (alpha: number) =>
      meanLabelEntropy(partsOf(dirichletPartitioner(labels, { numPartitions: 10, alpha, seed: 5, minPartitionSize: 1 })));
    const [low, mid, high] = [entropy(0.1), entropy(1), entropy(100)];
    expect(low).toBeLessThan(mid);
    expect(mid).toBeLessThan(high);
    expect(high).toBeGreaterThan(0.95 * Math.log(10));
    expect(low).toBeLessThan(0.5 * Math.log(10));
  });

  it("redraws until every partition reaches minPartitionSize", () => {
    const parts = partsOf(dirichletPartitioner(labels, { numPartitions: 10, alpha: 1, seed: 0, minPartitionSize: 30, maxTries: 50 }));
    expect(Math.min(...parts.map((p) => p.length))).toBeGreaterThanOrEqual(30);
    expectCover(parts, labels.length);
  });

  it("says when minPartitionSize is impossible or not reached", () => {
    expect(() => dirichletPartitioner(labels, { numPartitions: 10, alpha: 1, seed: 0, minPartitionSize: 101 })).toThrow(
      /cannot give 10 partitions 101 items/,
    );
    expect(() => dirichletPartitioner(labels, { numPartitions: 10, alpha: 0.05, seed: 0, minPartitionSize: 90 })).toThrow(
      expect.objectContaining({ code: "partition_min_size_unmet", message: expect.stringMatching(/after 10 Dirichlet\(0.05\) draws/) }),
    );
    for (const alpha of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => dirichletPartitioner(labels, { numPartitions: 2, alpha, seed: 0 })).toThrow(
        expect.objectContaining({ code: "partitioner_invalid" }),
      );
    }
  });
});

describe("natural partitioner", () => {
  const keys = ["b", "a", "b", "c", "a"];

  it("gives one partition per key, in key order, indices in dataset order", () => {
    const p = naturalPartitioner(keys);
    expect(partsOf(p)).toEqual([[1, 4], [0, 2], [3]]);
    expect(p.keys).toEqual([["a"], ["b"], ["c"]]);
  });

  it("merges keys round-robin into fewer partitions", () => {
    const p = naturalPartitioner(keys, 2);
    expect(partsOf(p)).toEqual([
      [1, 3, 4],
      [0, 2],
    ]);
    expect(p.keys).toEqual([["a", "c"], ["b"]]);
  });

  it("refuses more partitions than keys, and no items", () => {
    expect(() => naturalPartitioner(keys, 4)).toThrow(/exceeds the 3 distinct keys/);
    expect(() => naturalPartitioner([])).toThrow(expect.objectContaining({ code: "dataset_empty" }));
  });
});
