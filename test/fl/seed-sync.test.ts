// A FedKSeed client's way from the version it holds to the round's, with versions pruned or not.
import { describe, expect, it } from "vitest";
import { seedChangesTo } from "../../src/fl/methods/fedkseed/seed-sync.ts";

/** An aggregator that keeps versions 0 and `kept`: version v's cumulative scalar of seed 0 is v. */
function aggregator(kept: readonly number[]) {
  const asked: string[] = [];
  const change = async (version: number, since: number) => {
    asked.push(`${version}-${since}`);
    return kept.includes(version) && (since === 0 || kept.includes(since)) ? new Map([[0, version - since]]) : null;
  };
  return { change, asked };
}

describe("seedChangesTo", () => {
  it("asks each round's change while every version is kept (FedKSeed-Pro's history needs them)", async () => {
    const a = aggregator([1, 2, 3, 4]);
    expect(await seedChangesTo(a.change, 1, 4)).toEqual({
      fromScratch: false,
      changes: [new Map([[0, 1]]), new Map([[0, 1]]), new Map([[0, 1]])],
    });
    expect(a.asked).toEqual(["2-1", "3-2", "4-3"]);
  });

  it("takes one cumulative change since its version when the rounds between were pruned", async () => {
    const a = aggregator([2, 5]);
    expect(await seedChangesTo(a.change, 2, 5)).toEqual({ fromScratch: false, changes: [new Map([[0, 3]])] });
  });

  it("starts again from version 0 when its own version was pruned", async () => {
    const a = aggregator([4, 5]);
    expect(await seedChangesTo(a.change, 2, 5)).toEqual({ fromScratch: true, changes: [new Map([[0, 5]])] });
    expect(a.asked).toEqual(["3-2", "5-2", "5-0"]);
  });

  it("keeps the rounds it could walk before a gap", async () => {
    const a = aggregator([1, 2, 4]);
    expect(await seedChangesTo(a.change, 1, 4)).toEqual({ fromScratch: false, changes: [new Map([[0, 1]]), new Map([[0, 2]])] });
  });

  it("asks nothing when it is already there, and says so when the round's version is gone", async () => {
    expect(await seedChangesTo(aggregator([3]).change, 3, 3)).toEqual({ fromScratch: false, changes: [] });
    await expect(seedChangesTo(aggregator([1]).change, 0, 3)).rejects.toThrow(/version 3 is no longer kept/);
  });
});
