// Language-modelling batches: documents' token ids (each with BOS/EOS) concatenated and cut into
// windows of `length + 1` tokens, so every window predicts `length` next tokens with no padding.
import type { TrainBatch } from "../engine/train/step.ts";

export function packWindows(docs: Iterable<readonly number[]>, length: number): number[][] {
  const stream: number[] = [];
  for (const d of docs) stream.push(...d);
  const windows: number[][] = [];
  for (let i = 0; i + length + 1 <= stream.length; i += length) windows.push(stream.slice(i, i + length + 1));
  return windows;
}

/** One batch of windows; loss weights 1 / (predicted tokens in `totalWindows` windows), for accumulation. */
export function windowBatch(windows: readonly (readonly number[])[], totalWindows = windows.length): TrainBatch {
  const length = windows[0]!.length - 1;
  const w = 1 / (totalWindows * length);
  return {
    ids: windows.map((x) => x.slice(0, length)),
    targets: windows.map((x) => x.slice(1)),
    lossWeights: windows.map(() => Array<number>(length).fill(w)),
  };
}

/** A seeded Fisher-Yates shuffle (a copy). */
export function shuffled<T>(items: readonly T[], uniform: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
