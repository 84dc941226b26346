import { describe, expect, it } from "vitest";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { initialServerState } from "../../src/fl/server-state.ts";
import { fedAdamEta } from "../../src/fl/strategies/fedadam.ts";
import type { ServerState } from "../../src/fl/strategy.ts";
import { cloneTensors } from "../../src/fl/tensors.ts";
import { expectFlError, expectTensors, plain, tm } from "./helpers.ts";

const reload = (s: ServerState): ServerState => ({ round: s.round, slots: cloneTensors(s.slots) });

describe("FedAdagrad", () => {
  it("runs two rounds by hand, v accumulating Δ²", () => {
    // η = 0.5, τ = 1, β1 = 0 (Flower's), x_1 = [1, 2, 3].
    // Round 1: Δ = [3, -4, 0]; m = Δ = [3, -4, 0]; v = 0 + Δ² = [9, 16, 0]
    //   x_2 = x_1 + η·m/(√v + τ) = [1 + 0.5·3/4, 2 + 0.5·(-4)/5, 3 + 0] = [1.375, 1.6, 3]
    const config = { name: "fedadagrad", eta: 0.5, tau: 1 };
    const r1 = createStrategy(config).aggregateTrain(tm({ w: [1, 2, 3] }), tm({ w: [3, -4, 0] }), initialServerState());
    expectTensors(r1.global, { w: [1.375, 1.6, 3] });
    expect(plain(r1.state.slots)).toEqual({ "m/w": [3, -4, 0], "v/w": [9, 16, 0] });
    // Round 2: Δ = [4, 3, 0]; m = [4, 3, 0]; v = [9 + 16, 16 + 9, 0] = [25, 25, 0]
    //   x_3 = [1.375 + 0.5·4/6, 1.6 + 0.5·3/6, 3] = [1.708333…, 1.85, 3]
    const r2 = createStrategy(config).aggregateTrain(r1.global, tm({ w: [4, 3, 0] }), reload(r1.state));
    expectTensors(r2.global, { w: [1.375 + 1 / 3, 1.85, 3] });
    expect(plain(r2.state.slots)).toEqual({ "m/w": [4, 3, 0], "v/w": [25, 25, 0] });
    expect(r2.state.round).toBe(2);
  });

  it("keeps a first moment when β1 > 0", () => {
    // β1 = 0.5, η = 1, τ = 1, one element: Δ = 2 → m = 0.5·0 + 0.5·2 = 1; v = 4; x = 0 + 1·1/(2 + 1) = 1/3
    const r = createStrategy({ name: "fedadagrad", eta: 1, tau: 1, beta1: 0.5 }).aggregateTrain(
      tm({ w: [0] }),
      tm({ w: [2] }),
      initialServerState(),
    );
    expectTensors(r.global, { w: [1 / 3] });
  });
});

describe("FedAdam", () => {
  it("uses Flower's bias-corrected step size with exponent round + 1", () => {
    // η_t = η·√(1 − β2^(t+1)) / (1 − β1^(t+1)); Flower defaults, t = 1: 0.1·√(1 − 0.99²)/(1 − 0.9²)
    //     = 0.1·√0.0199/0.19 = 0.0742459788…
    expect(fedAdamEta(0.1, 0.9, 0.99, 1)).toBeCloseTo(0.07424597884034684, 14);
    // t = 2: 0.1·√(1 − 0.99³)/(1 − 0.9³) = 0.1·√0.029701/0.271
    expect(fedAdamEta(0.1, 0.9, 0.99, 2)).toBeCloseTo((0.1 * Math.sqrt(0.029701)) / 0.271, 14);
  });

  it("runs two rounds by hand, with state carried across", () => {
    // η = 0.1, β1 = 0.5, β2 = 0.75, τ = 0.5, x_1 = [1, 2, 3].
    // Round 1 (t = 1): Δ = [2, -2, 0]
    //   m = 0.5·0 + 0.5·Δ = [1, -1, 0];  v = 0.75·0 + 0.25·Δ² = [1, 1, 0]
    //   η_1 = 0.1·√(1 − 0.75²)/(1 − 0.5²) = 0.1·√0.4375/0.75 = 0.08819171036881969
    //   x_2 = x_1 + η_1·m/(√v + 0.5) = [1 + η_1/1.5, 2 − η_1/1.5, 3] = [1.0587944735792132, 1.9412055264207868, 3]
    const config = { name: "fedadam", eta: 0.1, beta1: 0.5, beta2: 0.75, tau: 0.5 };
    const r1 = createStrategy(config).aggregateTrain(tm({ w: [1, 2, 3] }), tm({ w: [2, -2, 0] }), initialServerState());
    expectTensors(r1.global, { w: [1.0587944735792132, 1.9412055264207868, 3] });
    expect(plain(r1.state.slots)).toEqual({ "m/w": [1, -1, 0], "v/w": [1, 1, 0] });
    // Round 2 (t = 2): Δ = [4, 2, 2]
    //   m = 0.5·[1,-1,0] + 0.5·[4,2,2] = [2.5, 0.5, 1];  v = 0.75·[1,1,0] + 0.25·[16,4,4] = [4.75, 1.75, 1]
    //   η_2 = 0.1·√(1 − 0.75³)/(1 − 0.5³) = 0.1·√0.578125/0.875 = 0.08689660757568886
    //   x_3 = x_2 + η_2·m/(√v + 0.5) = [1.139871396741227, 1.965040560728246, 3.057931071717126]
    const r2 = createStrategy(config).aggregateTrain(r1.global, tm({ w: [4, 2, 2] }), reload(r1.state));
    expectTensors(r2.global, { w: [1.139871396741227, 1.965040560728246, 3.057931071717126] });
    expect(plain(r2.state.slots)).toEqual({ "m/w": [2.5, 0.5, 1], "v/w": [4.75, 1.75, 1] });
    expect(r2.state.round).toBe(2);
  });

  it("without bias correction is the paper's update", () => {
    // Same round 1 with η_t = η: x_2 = [1 + 0.1·1/1.5, 2 − 0.1/1.5, 3] = [1.0666…, 1.9333…, 3]
    const r = createStrategy({ name: "fedadam", eta: 0.1, beta1: 0.5, beta2: 0.75, tau: 0.5, biasCorrection: false }).aggregateTrain(
      tm({ w: [1, 2, 3] }),
      tm({ w: [2, -2, 0] }),
      initialServerState(),
    );
    expectTensors(r.global, { w: [1 + 0.1 / 1.5, 2 - 0.1 / 1.5, 3] });
  });

  it("gives the same result resumed from a persisted state as uninterrupted", () => {
    const config = { name: "fedadam", eta: 0.01, tau: 1e-9 };
    const deltas = [tm({ a: [0.1, -0.3], b: [1e-4] }), tm({ a: [-0.2, 0.05], b: [3e-4] }), tm({ a: [0.7, 0.7], b: [-1e-4] })];
    const s = createStrategy(config);
    let run = { global: tm({ a: [0.5, -0.5], b: [2] }), state: initialServerState() };
    let resumed = { global: tm({ a: [0.5, -0.5], b: [2] }), state: initialServerState() };
    for (const d of deltas) {
      run = s.aggregateTrain(run.global, d, run.state);
      resumed = createStrategy(config).aggregateTrain(cloneTensors(resumed.global), d, reload(resumed.state));
    }
    expect(plain(resumed.global)).toEqual(plain(run.global));
    expect(plain(resumed.state.slots)).toEqual(plain(run.state.slots));
    expect(run.state.round).toBe(3);
  });

  it("refuses a state with only some of its moments", () => {
    const s = createStrategy({ name: "fedadam" });
    expectFlError(
      () => s.aggregateTrain(tm({ w: [1] }), tm({ w: [1] }), { round: 1, slots: tm({ "m/w": [0] }) }),
      "state_invalid",
      '"v/w"',
    );
  });
});

describe("FedYogi", () => {
  it("runs two rounds by hand, through both signs and sign 0", () => {
    // η = 0.1, β1 = 0.5, β2 = 0.75, τ = 0.5, x_1 = [1, 2, 3, 2].
    // v_t = v − (1 − β2)·Δ²·sign(v − Δ²)
    // Round 1: Δ = [2, -2, 0, 2]
    //   m = 0.5·Δ = [1, -1, 0, 1]
    //   v = 0 − 0.25·Δ²·sign(0 − Δ²) = [1, 1, 0 (sign 0), 1]
    //   x_2 = x_1 + 0.1·m/(√v + 0.5) = [1 + 0.1/1.5, 2 − 0.1/1.5, 3, 2 + 0.1/1.5]
    const config = { name: "fedyogi", eta: 0.1, beta1: 0.5, beta2: 0.75, tau: 0.5 };
    const r1 = createStrategy(config).aggregateTrain(tm({ w: [1, 2, 3, 2] }), tm({ w: [2, -2, 0, 2] }), initialServerState());
    expectTensors(r1.global, { w: [1 + 0.1 / 1.5, 2 - 0.1 / 1.5, 3, 2 + 0.1 / 1.5] });
    expect(plain(r1.state.slots)).toEqual({ "m/w": [1, -1, 0, 1], "v/w": [1, 1, 0, 1] });
    // Round 2: Δ = [4, 0.5, 2, 1], Δ² = [16, 0.25, 4, 1]
    //   v: [1 − 0.25·16·sign(1 − 16) = 1 + 4 = 5,
    //       1 − 0.25·0.25·sign(1 − 0.25) = 1 − 0.0625 = 0.9375   (Adam would give 0.8125),
    //       0 − 0.25·4·sign(0 − 4) = 1,
    //       1 − 0.25·1·sign(1 − 1) = 1]                           (sign 0: unchanged)
    //   m = 0.5·m + 0.5·Δ = [2.5, -0.25, 1, 1]
    //   x_3 = x_2 + 0.1·m/(√v + 0.5)
    //       = [1.0666… + 0.25/(√5 + 0.5), 1.9333… − 0.025/(√0.9375 + 0.5), 3 + 0.1/1.5, 2.0666… + 0.1/1.5]
    //       = [1.158038665482445, 1.916306212004175, 3.066666666666667, 2.1333333333333337]
    const r2 = createStrategy(config).aggregateTrain(r1.global, tm({ w: [4, 0.5, 2, 1] }), reload(r1.state));
    expectTensors(r2.global, { w: [1.158038665482445, 1.916306212004175, 3.066666666666667, 2.1333333333333337] });
    expect(plain(r2.state.slots)).toEqual({ "m/w": [2.5, -0.25, 1, 1], "v/w": [5, 0.9375, 1, 1] });
  });
});
