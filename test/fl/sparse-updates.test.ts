// Top-k sparse updates with error feedback (issue 21, compression): a client's sent values over rounds plus
// what it keeps back are its updates' sum (float64 here); a round's last slice run again sends the same
// update; the aggregator's reader scatters the values into the layout and refuses malformed positions.
import { describe, expect, it } from "vitest";
import { refusalOf } from "./helpers.ts";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { sparseRound } from "../../src/fl/client/sparse-feedback.ts";
import { sparseBody } from "../../src/fl/client/upload.ts";
import { flatLayout, tensorFileSource } from "../../src/fl/flat-tensors.ts";
import { topK } from "../../src/fl/sparse-updates.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader, writeSafetensors } from "../../src/protocol/safetensors.ts";

const shapes = new Map([
  ["a", [16, 8]],
  ["b", [40]],
]);
const deltaOf = (round: number) =>
  new Map([...shapes].map(([name, s], j) => [name, normalSamples(seededUniform(100 * round + j), s[0]! * (s[1] ?? 1), 0.1)]));
const memoryStore = () => {
  const kept = new Map<string, Uint8Array>();
  return { get: (n: string) => kept.get(n) ?? null, put: (n: string, b: Uint8Array) => void kept.set(n, b), kept };
};

describe("top-k sparse updates", () => {
  it("send each tensor's largest values, and over rounds send all of the updates' sum but what is kept back", () => {
    const t = Float32Array.of(0.1, -3, 2, 0, -2, 0.5);
    expect(topK(t, 0.5)).toEqual({ indices: Int32Array.of(1, 2, 4), values: Float32Array.of(-3, 2, -2) });
    expect(topK(t, 0.01).indices).toEqual(Int32Array.of(1));

    const store = memoryStore();
    const sentSum = new Map([...shapes].map(([n, s]) => [n, new Float64Array(s[0]! * (s[1] ?? 1))]));
    const deltaSum = new Map([...shapes].map(([n, s]) => [n, new Float64Array(s[0]! * (s[1] ?? 1))]));
    for (let round = 1; round <= 4; round++) {
      const delta = deltaOf(round);
      const sent = sparseRound(store, round, delta, 0.25);
      // Run again (a retried last slice): the same values, and the residual not fed twice.
      expect(sparseRound(store, round, delta, 0.25)).toEqual(sent);
      for (const [n, s] of sent) {
        expect(s.indices.length).toBe(Math.ceil(0.25 * deltaSum.get(n)!.length));
        s.indices.forEach((i, j) => (sentSum.get(n)![i]! += s.values[j]!));
        delta.get(n)!.forEach((x, i) => (deltaSum.get(n)![i]! += x));
      }
    }
    const kept = decodeTensorFile(store.kept.get("topk-residual")!, "residual");
    expect(kept.metadata.round).toBe("4");
    let worst = 0;
    let keptBack = 0;
    for (const [n, sum] of deltaSum) {
      const residual = kept.tensors.get(`out.${n}`)!;
      sum.forEach((x, i) => {
        worst = Math.max(worst, Math.abs(x - (sentSum.get(n)![i]! + residual[i]!)));
        keptBack = Math.max(keptBack, Math.abs(residual[i]!));
      });
    }
    expect(keptBack).toBeGreaterThan(0);
    expect(worst).toBeLessThan(1e-6);
  });

  it("are read by the aggregator scattered into the layout; malformed positions are refused", () => {
    const global = readSafetensorsHeader(encodeTensorFile(deltaOf(0), shapes));
    const layout = flatLayout(global);
    const sent = sparseRound(memoryStore(), 1, deltaOf(1), 0.2);
    const { source } = tensorFileSource(sparseBody(sent, 5, {}), layout, global.dataStart, "upload");
    const out = new Float32Array(layout.total);
    // Read in pieces that cut through the tensors, as the aggregator reads segments.
    for (let start = 0; start < layout.total; start += 37) source.read(start, out.subarray(start, Math.min(layout.total, start + 37)));
    const want = new Float32Array(layout.total);
    for (const t of layout.tensors) sent.get(t.name)!.indices.forEach((i, j) => (want[t.start + i] = sent.get(t.name)!.values[j]!));
    expect(out).toEqual(want);
    expect(out.filter((x) => x !== 0).length).toBe(Math.ceil(0.2 * 128) + Math.ceil(0.2 * 40));

    const body = (indices: number[], values = indices.length, dtype: "I32" | "I8" = "I32") =>
      writeSafetensors(
        {
          a: { dtype: "F32", shape: [values], data: new Float32Array(values) },
          "a.indices":
            dtype === "I32"
              ? { dtype, shape: [indices.length], data: Int32Array.from(indices) }
              : { dtype, shape: [indices.length], data: Int8Array.from(indices) },
          b: { dtype: "F32", shape: [40], data: new Float32Array(40) },
        },
        { num_examples: "1" },
      );
    const refusal = (b: Uint8Array) => refusalOf(() => tensorFileSource(b, layout, global.dataStart, "upload"));
    expect(refusal(body([0, 5, 127]))).toBe("accepted");
    expect(refusal(body([0, 5, 128]))).toContain("strictly ascending within its 128 values (position 2 is 128)");
    expect(refusal(body([5, 5]))).toContain("strictly ascending");
    expect(refusal(body([-1, 5]))).toContain("strictly ascending");
    expect(refusal(body([0, 5], 3))).toContain('sparse tensor "a" has 3 values and 2 positions');
    expect(refusal(body([0, 5], 2, "I8"))).toContain("their positions (1-D, I32)");
  });
});
