// A client's heartbeat while it trains a round: how far it is, so the open round shows where each client
// is. Small and bounded: two integers.
import * as v from "valibot";
import { parseClientReport } from "./federation.ts";

const steps = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1_000_000));

export const ProgressReport = v.pipe(
  v.strictObject({ stepsDone: steps, steps: v.pipe(steps, v.minValue(1)) }),
  v.check((p) => p.stepsDone <= p.steps, "stepsDone cannot exceed steps"),
);
export type ProgressReport = v.InferOutput<typeof ProgressReport>;

/** The largest heartbeat body. */
export const PROGRESS_BYTES = 256;

export function parseProgressReport(body: Uint8Array): ProgressReport {
  return parseClientReport(ProgressReport, body, "a progress report", '{"stepsDone": n, "steps": m}');
}
