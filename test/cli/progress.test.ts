// What `fedflare run` shows while a round runs (cli/run/progress.ts): the in-place block on a fake terminal
// (a stream that says it is a TTY and records what cli-progress writes, escape codes included), a line per
// change elsewhere, JSON lines with --json, only warnings with --quiet; the time left from the share done.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { duration, progressFor, type RoundState, roundShare, stateLine, timeLeft } from "../../cli/run/progress.ts";

/** A stream that records what is written to it; a terminal of 100 columns when `tty`. */
function fakeStream(tty: boolean): NodeJS.WriteStream & { text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  }) as unknown as NodeJS.WriteStream & { text: () => string };
  Object.assign(stream, { isTTY: tty, columns: 100, rows: 30, text: () => chunks.join("") });
  return stream;
}

const state = (steps: [number, number], uploads: number, elapsedMs: number): RoundState => ({
  round: 2,
  rounds: 4,
  clients: [
    { id: "c1", status: steps[0] >= 12 ? "uploaded" : "training", stepsDone: steps[0], steps: 12 },
    { id: "c2", status: "training", stepsDone: steps[1], steps: 12 },
  ],
  uploads,
  elapsedMs,
});

describe("run progress", () => {
  it("estimates the time left from the share of steps done", () => {
    expect(roundShare(state([6, 3], 0, 10_000))).toBeCloseTo(9 / 24, 12);
    // 9 of 24 steps in 10 s: 15 left at that rate, 16.7 s.
    expect(timeLeft(state([6, 3], 0, 10_000))).toBe("17 s");
    expect(timeLeft(state([0, 0], 0, 1000))).toBe("?");
    expect(timeLeft(state([12, 12], 2, 1000))).toBe("0 s");
    expect(duration(65_000)).toBe("1 m 05 s");
    expect(stateLine(state([12, 4], 1, 0))).toBe("round 2/4  c1 uploaded  c2 step 4/12  uploads 1/2");
  });

  it("draws one block per round in a terminal, redrawn in place, with lines kept above it", async () => {
    const out = fakeStream(true);
    const p = progressFor("auto", out);
    p.round(state([3, 1], 0, 4000));
    p.round(state([12, 6], 1, 20_000));
    p.line("kept line");
    p.endRound();
    const text = out.text();
    // The header with the round, uploads, elapsed and time left; a bar per client with its steps or status.
    expect(text).toMatch(/round 2\/4 {2}uploads 1\/2 {2}elapsed 20 s {2}left 7 s/);
    expect(text).toMatch(/c1 \[█{30}\] uploaded/);
    expect(text).toMatch(/c2 \[█{15}░{15}\] step 6\/12/);
    expect(text).toContain("kept line");
    // In place: cli-progress moves the cursor back up over the block (CSI n A) to redraw it.
    expect(text.split(String.fromCharCode(27)).some((code) => /^\[\d+A/.test(code))).toBe(true);
    expect(text.split("round 2/4").length - 1).toBeGreaterThanOrEqual(2);
  });

  it("prints a line per change without a terminal, JSON lines with --json, and only warnings with --quiet", () => {
    const lines = fakeStream(false);
    const p = progressFor("auto", lines);
    p.round(state([3, 1], 0, 1000));
    p.round(state([3, 1], 0, 1500));
    p.round(state([12, 1], 1, 2000));
    p.warn("c2 failed: out of memory");
    expect(lines.text()).toBe(
      "round 2/4  c1 step 3/12  c2 step 1/12  uploads 0/2\nround 2/4  c1 uploaded  c2 step 1/12  uploads 1/2\nc2 failed: out of memory\n",
    );
    const json = fakeStream(false);
    const j = progressFor("json", json);
    j.round(state([3, 1], 0, 1000));
    j.line("round 2 closed");
    const events = json
      .text()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events).toEqual([
      expect.objectContaining({ event: "round", round: 2, uploads: 0, share: 4 / 24, clients: expect.any(Array) }),
      { event: "line", text: "round 2 closed" },
    ]);
    const quiet = fakeStream(false);
    const q = progressFor("quiet", quiet);
    q.round(state([3, 1], 0, 1000));
    q.line("round 2 closed");
    q.warn("c2 failed");
    expect(quiet.text()).toBe("c2 failed\n");
  });
});
