// Learning-rate schedule: linear warmup from 0, then cosine decay to `minLr` (as transformers'
// get_cosine_schedule_with_warmup, with a floor).

export interface ScheduleOptions {
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  minLr?: number;
}

/** The learning rate of update `step` (0-based). */
export function learningRate(step: number, s: ScheduleOptions): number {
  const min = s.minLr ?? 0;
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps));
  return min + (s.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
