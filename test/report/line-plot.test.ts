import { describe, expect, it } from "vitest";
import { linePlotSvg, ticks } from "../../src/report/line-plot.ts";

describe("line plot ticks", () => {
  it("gives round values covering the range", () => {
    expect(ticks(0, 4, 8, true)).toEqual([0, 1, 2, 3, 4]);
    expect(ticks(0.8, 2.3, 6)).toEqual([1, 1.5, 2]);
    expect(ticks(-1, 1, 4)).toEqual([-1, -0.5, 0, 0.5, 1]);
  });

  it("ends on spans finer than the values' float spacing (losses 1 and 1.0000000000000002)", () => {
    const t = ticks(1 - 1e-17, 1.0000000000000002 + 1e-17, 6);
    expect(t.length).toBeGreaterThan(0);
    expect(t.length).toBeLessThanOrEqual(24);
    const svg = linePlotSvg(
      [
        {
          name: "loss",
          points: [
            [1, 1],
            [2, 1.0000000000000002],
          ],
          color: "#000",
        },
      ],
      { title: "t", xLabel: "x", yLabel: "y", integerX: true },
    );
    expect(svg).toMatch(/^<svg/);
    expect(svg.match(/<line /g)!.length).toBeLessThan(60);
  });
});
