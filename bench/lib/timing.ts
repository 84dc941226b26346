// Wall-clock timing for benchmarks: warm-up calls first (session allocation, first-run kernels), then
// medians, because this machine is noisy and a mean would follow its outliers.

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("median of no samples");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface TimingOptions {
  warmup: number;
  /** Timed calls at least. */
  reps: number;
  /** Keep timing past `reps` until the samples add up to this many ms (more samples for fast calls). */
  minMs?: number;
  /** ...but never more calls than this. */
  maxReps?: number;
}

export interface Timing {
  medianMs: number;
  samplesMs: number[];
}

export async function time(fn: () => Promise<unknown>, o: TimingOptions): Promise<Timing> {
  for (let i = 0; i < o.warmup; i++) await fn();
  const samplesMs: number[] = [];
  let total = 0;
  while (samplesMs.length < o.reps || (total < (o.minMs ?? 0) && samplesMs.length < (o.maxReps ?? Infinity))) {
    const t0 = performance.now();
    await fn();
    const dt = performance.now() - t0;
    samplesMs.push(dt);
    total += dt;
  }
  return { medianMs: median(samplesMs), samplesMs };
}
