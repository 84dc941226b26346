// Wall-clock timing for benchmarks: warm-up calls first (session allocation, first-run kernels), then
// medians, because this machine is noisy and a mean would follow its outliers.

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("median of no samples");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface TimingOptions {
  /** Untimed rounds first. */
  warmup: number;
  /** Timed rounds at least. */
  reps: number;
  /** Keep timing rounds past `reps` until the samples add up to this many ms (more samples for fast calls). */
  minMs?: number;
  /** ...but never more rounds than this. */
  maxReps?: number;
}

export interface Timing {
  medianMs: number;
  samplesMs: number[];
}

/**
 * Times calls in rounds, one call of each per round (a, b, a, b, ...), so that they all see the same
 * background load: on a shared machine the ratio of their medians holds far better than medians taken
 * one after the other. One Timing per call, in order.
 */
export async function timeInterleaved(fns: readonly (() => Promise<unknown>)[], o: TimingOptions): Promise<Timing[]> {
  for (let i = 0; i < o.warmup; i++) for (const fn of fns) await fn();
  const samples = fns.map((): number[] => []);
  let total = 0;
  for (let round = 0; round < o.reps || (total < (o.minMs ?? 0) && round < (o.maxReps ?? Infinity)); round++)
    for (const [i, fn] of fns.entries()) {
      const t0 = performance.now();
      await fn();
      const dt = performance.now() - t0;
      samples[i]!.push(dt);
      total += dt;
    }
  return samples.map((s) => ({ medianMs: median(s), samplesMs: s }));
}
