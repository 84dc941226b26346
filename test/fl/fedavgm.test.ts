import { describe, expect, it } from "vitest";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { initialServerState } from "../../src/fl/server-state.ts";
import type { ServerState } from "../../src/fl/strategy.ts";
import { cloneTensors } from "../../src/fl/tensors.ts";
import { expectFlError, plain, tm } from "./helpers.ts";

/** The state as the aggregator would persist and reload it: fresh buffers, nothing shared. */
const reload = (s: ServerState): ServerState => ({ round: s.round, slots: cloneTensors(s.slots) });

describe("FedAvgM", () => {
  it("applies server momentum on the pseudo-gradient over two rounds, by hand", () => {
    // η = 0.5, β = 0.5, x_1 = [1, 2, 3].
    // Round 1: Δ = [0.5, -1, 0.25] → g_1 = −Δ = [-0.5, 1, -0.25]; m_1 = g_1 (Flower's first-round init)
    //          x_2 = x_1 − η·m_1 = [1 + 0.25, 2 − 0.5, 3 + 0.125] = [1.25, 1.5, 3.125]
    const config = { name: "fedavgm", serverLearningRate: 0.5, serverMomentum: 0.5 };
    const r1 = createStrategy(config).aggregateTrain(tm({ w: [1, 2, 3] }), tm({ w: [0.5, -1, 0.25] }), initialServerState());
    expect(plain(r1.global)).toEqual({ w: [1.25, 1.5, 3.125] });
    expect(r1.state.round).toBe(1);
    expect(plain(r1.state.slots)).toEqual({ "momentum/w": [-0.5, 1, -0.25] });
    // Round 2 (a fresh strategy object and a reloaded state: nothing is hidden in the strategy):
    //   Δ = [1, 1, -2] → g_2 = [-1, -1, 2]
    //   m_2 = β·m_1 + g_2 = [-0.25 − 1, 0.5 − 1, -0.125 + 2] = [-1.25, -0.5, 1.875]
    //   x_3 = x_2 − η·m_2 = [1.25 + 0.625, 1.5 + 0.25, 3.125 − 0.9375] = [1.875, 1.75, 2.1875]
    const r2 = createStrategy(config).aggregateTrain(r1.global, tm({ w: [1, 1, -2] }), reload(r1.state));
    expect(plain(r2.global)).toEqual({ w: [1.875, 1.75, 2.1875] });
    expect(plain(r2.state.slots)).toEqual({ "momentum/w": [-1.25, -0.5, 1.875] });
    expect(r2.state.round).toBe(2);
  });

  it("without momentum keeps no slots and steps by η·Δ", () => {
    // Flower's defaults (η = 1, β = 0) are FedAvg: [1,2,3] + [0.5,-1,0.25] = [1.5, 1, 3.25]
    const r = createStrategy({ name: "fedavgm" }).aggregateTrain(tm({ w: [1, 2, 3] }), tm({ w: [0.5, -1, 0.25] }), initialServerState());
    expect(plain(r.global)).toEqual({ w: [1.5, 1, 3.25] });
    expect(r.state.slots.size).toBe(0);
    // η = 2, β = 0: [1,2,3] + 2·[0.5,-1,0.25] = [2, 0, 3.5]
    const r2 = createStrategy({ name: "fedavgm", serverLearningRate: 2 }).aggregateTrain(
      tm({ w: [1, 2, 3] }),
      tm({ w: [0.5, -1, 0.25] }),
      initialServerState(),
    );
    expect(plain(r2.global)).toEqual({ w: [2, 0, 3.5] });
  });

  it("refuses a state whose momentum does not fit", () => {
    const s = createStrategy({ name: "fedavgm", serverMomentum: 0.9 });
    const g = tm({ a: [1, 2], b: [3] });
    const d = tm({ a: [0, 0], b: [0] });
    expectFlError(
      () => s.aggregateTrain(g, d, { round: 1, slots: tm({ "momentum/a": [0, 0] }) }),
      "state_invalid",
      '"momentum/b"',
      "missing",
    );
    expectFlError(
      () => s.aggregateTrain(g, d, { round: 1, slots: tm({ "momentum/a": [0], "momentum/b": [0] }) }),
      "state_invalid",
      '"momentum/a"',
    );
    expectFlError(
      () => s.aggregateTrain(g, d, { round: 1, slots: tm({ "momentum/a": [0, 0], "momentum/b": [0], "v/a": [0, 0] }) }),
      "state_invalid",
      '"v/a"',
    );
    expectFlError(
      () => s.aggregateTrain(g, d, { round: 1, slots: tm({ "momentum/a": [0, NaN], "momentum/b": [0] }) }),
      "state_invalid",
      "index 1",
    );
  });
});
