import { describe, expect, it } from "vitest";
import { Batcher } from "../../src/engine/batcher.ts";

describe("Batcher", () => {
  it("runs up to maxBatch together and keeps each caller's answer", async () => {
    const calls: number[][] = [];
    const b = new Batcher(
      async (xs: number[]) => {
        calls.push(xs);
        return xs.map((x) => x * 10);
      },
      { maxBatch: 3, maxWaitMs: 50 },
    );
    const out = await Promise.all([1, 2, 3, 4, 5].map((x) => b.submit(x)));
    expect(out).toEqual([10, 20, 30, 40, 50]);
    expect(calls).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    expect(b.stats).toEqual({ batches: 2, items: 5, largest: 3 });
  });

  it("runs a lone request after maxWaitMs", async () => {
    const b = new Batcher(async (xs: string[]) => xs.map((x) => x.toUpperCase()), { maxBatch: 8, maxWaitMs: 20 });
    const t0 = Date.now();
    expect(await b.submit("a")).toBe("A");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(15);
    expect(b.stats).toEqual({ batches: 1, items: 1, largest: 1 });
  });

  it("rejects every request of a failed batch, and goes on", async () => {
    let fail = true;
    const b = new Batcher(
      async (xs: number[]) => {
        if (fail) throw new Error("boom");
        return xs;
      },
      { maxBatch: 2, maxWaitMs: 5 },
    );
    await expect(Promise.all([b.submit(1), b.submit(2)])).rejects.toThrow("boom");
    fail = false;
    expect(await b.submit(3)).toBe(3);
  });
});
