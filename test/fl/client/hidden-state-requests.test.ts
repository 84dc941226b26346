// A split client's hidden-state requests fit the endpoint's caps: rows per request, and the answer's bytes
// (rows x the longest row x hidden x 4, as the endpoint pads).
import { describe, expect, it } from "vitest";
import { MAX_HIDDEN_STATE_BYTES, MAX_SCORED_ROWS } from "../../../src/fl/client/endpoint-scores.ts";
import { hiddenStateRequests } from "../../../src/fl/client/trunk-states.ts";

const answerBytes = (lengths: number[], request: number[], hidden: number) =>
  request.length * Math.max(...request.map((i) => lengths[i]!)) * hidden * 4;

describe("hiddenStateRequests", () => {
  it("splits 8 rows of 512 tokens on a hidden-2048 model (32 MiB) into two answers of 16 MiB", () => {
    const lengths = Array<number>(8).fill(512);
    const requests = hiddenStateRequests(lengths, [0, 1, 2, 3, 4, 5, 6, 7], 2048);
    expect(requests).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    for (const r of requests) expect(answerBytes(lengths, r, 2048)).toBeLessThanOrEqual(MAX_HIDDEN_STATE_BYTES);
  });

  it("keeps every missing row once, in order, within the row cap, and pads by the longest row it holds", () => {
    const lengths = Array.from({ length: 700 }, (_, i) => 8 + ((i * 37) % 900));
    const wanted = lengths.map((_, i) => i).filter((i) => i % 3 !== 0);
    const requests = hiddenStateRequests(lengths, wanted, 576);
    expect(requests.flat()).toEqual(wanted);
    for (const r of requests) {
      expect(r.length).toBeLessThanOrEqual(MAX_SCORED_ROWS);
      expect(answerBytes(lengths, r, 576)).toBeLessThanOrEqual(MAX_HIDDEN_STATE_BYTES);
    }
    expect(
      hiddenStateRequests(
        Array<number>(300).fill(4),
        Array.from({ length: 300 }, (_, i) => i),
        64,
      ).map((r) => r.length),
    ).toEqual([256, 44]);
  });

  it("sends a row too long for any answer alone, for the endpoint to refuse with its cap named", () => {
    expect(hiddenStateRequests([4, 100_000, 4], [0, 1, 2], 4096)).toEqual([[0], [1], [2]]);
    expect(hiddenStateRequests([], [], 64)).toEqual([]);
  });
});
