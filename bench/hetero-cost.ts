// What the heterogeneous-rank rules' SVD costs at a round's close (issue 21): FlexLoRA's and FLoRA's rank-r
// SVD of a module's weighted product (src/fl/hetero/rules.ts), through the stack's QR when the stacked rank
// K = Σ r_k is below the module's sides, else the dense product's, on random factors. Per module shape and
// round: the milliseconds, the work units the creation check counts (K²(in + out) through the QR, in · out ·
// min(in, out) dense: src/fl/methods/lora/hetero.ts closeWork) and the nanoseconds a unit, the figure its
// bound on a close's work rests on.
// Run: node bench/hetero-cost.ts
import { normalSamples } from "../src/engine/llama/init.ts";
import { seededUniform } from "../src/engine/sampling.ts";
import { svdRedistribute } from "../src/fl/hetero/rules.ts";
import { moduleWork } from "../src/fl/methods/lora/hetero.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { writeResults } from "./lib/results.ts";

const CASES: [dim: number, clients: number, r: number][] = [
  [576, 8, 8],
  [576, 80, 8],
  [1024, 8, 8],
  [1024, 32, 8],
  [2048, 16, 16],
  [4096, 8, 16],
];
const u = seededUniform(1);
const rows = CASES.map(([dim, clients, r]) => {
  const shape = { in: dim, out: dim };
  const factors = Array.from({ length: clients }, () => ({
    r,
    a: Float64Array.from(normalSamples(u, r * dim, 1)),
    b: Float64Array.from(normalSamples(u, dim * r, 1)),
  }));
  const started = performance.now();
  svdRedistribute(
    factors,
    factors.map(() => 1 / clients),
    shape,
    [r],
  );
  const ms = performance.now() - started;
  const work = moduleWork(shape, clients * r);
  return { dim, clients, r, stacked: clients * r, ms, work, nsPerUnit: (ms * 1e6) / work };
});
printTable(
  ["module", "clients × rank", "K", "ms", "work units", "ns a unit"],
  rows.map((x) => [
    `${x.dim} × ${x.dim}`,
    `${x.clients} × ${x.r}`,
    String(x.stacked),
    fmt(x.ms, 0),
    x.work.toExponential(2),
    fmt(x.nsPerUnit, 1),
  ]),
);
process.stderr.write(`wrote ${await writeResults("hetero-cost", { rows })}\n`);
