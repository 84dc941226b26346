// Federated evaluation (issue 22): a client's report of a version scored on its own held-out split, as it
// sends it: how many examples it scored and a few metrics, never an example. Each metric is bounded so no
// report can dominate the example-weighted mean by its size alone.
import * as v from "valibot";
import { Metrics, parseClientReport } from "./federation.ts";

/** The largest magnitude a reported metric may have. */
export const METRIC_BOUND = 1e6;

export const EvaluationReport = v.strictObject({
  numExamples: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000_000)),
  metrics: v.pipe(
    Metrics,
    v.check((m) => Object.values(m).every((x) => Math.abs(x) <= METRIC_BOUND), `each metric lies in [-${METRIC_BOUND}, ${METRIC_BOUND}]`),
  ),
});
export type EvaluationReport = v.InferOutput<typeof EvaluationReport>;

/** The largest report body. */
export const EVALUATION_BYTES = 4096;

export function parseEvaluationReport(body: Uint8Array): EvaluationReport {
  return parseClientReport(EvaluationReport, body, "an evaluation report", '{"numExamples": n, "metrics": {"loss": x, ...}}');
}
