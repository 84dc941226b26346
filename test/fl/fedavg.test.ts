import { describe, expect, it } from "vitest";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { initialServerState } from "../../src/fl/server-state.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { foldDelta, meanOf } from "../../src/fl/weighted-mean.ts";
import { expectFlError, plain, tm } from "./helpers.ts";

describe("FedAvg", () => {
  it("is the example-weighted mean of the clients' tensors", () => {
    // Global [1,2,3]; client A → [2,2,3] (1 example), B → [1,5,3] (3 examples).
    // Mean delta = (1·[1,0,0] + 3·[0,3,0]) / 4 = [0.25, 2.25, 0]; new = [1.25, 4.25, 3]
    // = (1·[2,2,3] + 3·[1,5,3]) / 4, Flower's weighted average of parameters.
    const global = tm({ w: [1, 2, 3] });
    let sum: TensorMap | null = null;
    sum = foldDelta(sum, tm({ w: [1, 0, 0] }), 1);
    sum = foldDelta(sum, tm({ w: [0, 3, 0] }), 3);
    const out = createStrategy({ name: "fedavg" }).aggregateTrain(global, meanOf(sum, 4), initialServerState());
    expect(plain(out.global)).toEqual({ w: [1.25, 4.25, 3] });
    expect(out.state.round).toBe(1);
    expect(out.state.slots.size).toBe(0);
    expect(plain(global)).toEqual({ w: [1, 2, 3] }); // inputs untouched
  });

  it("runs two rounds, with a server learning rate", () => {
    const s = createStrategy({ name: "fedavg" });
    // round 1: [1,2,3] + [0.5,-1,0.25] = [1.5, 1, 3.25]
    const r1 = s.aggregateTrain(tm({ w: [1, 2, 3] }), tm({ w: [0.5, -1, 0.25] }), initialServerState());
    expect(plain(r1.global)).toEqual({ w: [1.5, 1, 3.25] });
    // round 2: [1.5,1,3.25] + [1,1,-2] = [2.5, 2, 1.25]
    const r2 = s.aggregateTrain(r1.global, tm({ w: [1, 1, -2] }), r1.state);
    expect(plain(r2.global)).toEqual({ w: [2.5, 2, 1.25] });
    expect(r2.state.round).toBe(2);
    // η = 0.5: [1,2,3] + 0.5·[0.5,-1,0.25] = [1.25, 1.5, 3.125]
    const half = createStrategy({ name: "fedavg", serverLearningRate: 0.5 });
    expect(plain(half.aggregateTrain(tm({ w: [1, 2, 3] }), tm({ w: [0.5, -1, 0.25] }), initialServerState()).global)).toEqual({
      w: [1.25, 1.5, 3.125],
    });
  });

  it("configures rounds and refuses bad inputs", () => {
    const s = createStrategy({ name: "fedavg" });
    expect(s.name).toBe("fedavg");
    expect(s.configureTrain(3)).toEqual({ round: 3, proximalMu: 0 });
    expect(s.configureEvaluate(3)).toEqual({ round: 3 });
    expectFlError(() => s.configureTrain(0), "state_invalid", "round");
    const g = tm({ w: [1, 2, 3] });
    expectFlError(() => s.aggregateTrain(g, tm({ w: [1, 2] }), initialServerState()), "tensor_mismatch", '"w"');
    expectFlError(() => s.aggregateTrain(g, tm({ v: [1, 2, 3] }), initialServerState()), "tensor_mismatch");
    expectFlError(() => s.aggregateTrain(g, tm({ w: [1, NaN, 3] }), initialServerState()), "non_finite", '"w"', "index 1");
    expectFlError(() => s.aggregateTrain(g, tm({ w: [0, 0, 0] }), { round: -1, slots: new Map() }), "state_invalid", "round");
    expectFlError(() => s.aggregateTrain(g, tm({ w: [0, 0, 0] }), { round: 1, slots: tm({ "m/w": [0, 0, 0] }) }), "state_invalid", '"m/w"');
    // A result that overflows float32 is refused, not returned.
    expectFlError(() => s.aggregateTrain(tm({ w: [3e38] }), tm({ w: [3e38] }), initialServerState()), "non_finite", "new global");
  });

  it("aggregates evaluation metrics weighted by examples", () => {
    // loss = (1·4 + 3·2) / 4 = 2.5
    const out = createStrategy({ name: "fedavg" }).aggregateEvaluate([
      { numExamples: 1, metrics: { loss: 4 } },
      { numExamples: 3, metrics: { loss: 2 } },
    ]);
    expect(out).toEqual({ loss: 2.5 });
  });
});
