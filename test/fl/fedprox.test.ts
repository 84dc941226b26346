import { describe, expect, it } from "vitest";
import { createStrategy } from "../../src/fl/create-strategy.ts";
import { initialServerState } from "../../src/fl/server-state.ts";
import { addProximalGradient, proximalPenalty } from "../../src/fl/strategies/fedprox.ts";
import { expectFlError, expectTensors, plain, tm } from "./helpers.ts";

describe("FedProx server side", () => {
  it("sends μ to clients and aggregates as FedAvg", () => {
    const s = createStrategy({ name: "fedprox", proximalMu: 0.01 });
    expect(s.name).toBe("fedprox");
    expect(s.configureTrain(1)).toEqual({ round: 1, proximalMu: 0.01 });
    expect(s.configureTrain(7)).toEqual({ round: 7, proximalMu: 0.01 });
    // [1,2,3] + [0.5,-1,0.25] = [1.5, 1, 3.25], no state
    const r = s.aggregateTrain(tm({ w: [1, 2, 3] }), tm({ w: [0.5, -1, 0.25] }), initialServerState());
    expect(plain(r.global)).toEqual({ w: [1.5, 1, 3.25] });
    expect(r.state).toEqual({ round: 1, slots: new Map() });
  });
});

describe("addProximalGradient", () => {
  it("adds μ·(w − w_global) to the gradients in place, by hand", () => {
    // μ = 0.1; a: w − w_g = [1 − 0.5, 2 − 2.5, 3 − 3] = [0.5, -0.5, 0] → g + 0.1·… = [0.1 + 0.05, -0.2 − 0.05, 0.3]
    //          b: w − w_g = [-1 − 1] = [-2] → [0 − 0.2] = [-0.2]
    const grads = tm({ a: [0.1, -0.2, 0.3], b: [0] });
    const a = grads.get("a");
    const out = addProximalGradient(grads, tm({ a: [1, 2, 3], b: [-1] }), tm({ a: [0.5, 2.5, 3], b: [1] }), 0.1);
    expect(out).toBe(grads);
    expect(out.get("a")).toBe(a);
    expectTensors(out, { a: [0.15, -0.25, 0.3], b: [-0.2] }, 1e-7);
  });

  it("is the gradient of (μ/2)·‖w − w_global‖² (checked by central differences)", () => {
    const params = tm({ a: [0.3, -1.2, 2], b: [0.75] });
    const global = tm({ a: [0.1, -1, 1.5], b: [1] });
    const mu = 0.2;
    // penalty = 0.1·(0.2² + 0.2² + 0.5² + 0.25²) = 0.1·0.3925 = 0.03925
    expect(proximalPenalty(params, global, mu)).toBeCloseTo(0.03925, 7);
    const grads = addProximalGradient(tm({ a: [0, 0, 0], b: [0] }), params, global, mu);
    const h = 1e-3;
    for (const [name, w] of params) {
      for (let i = 0; i < w.length; i++) {
        const wp = new Map([...params].map(([k, t]) => [k, t.slice()]));
        const wm = new Map([...params].map(([k, t]) => [k, t.slice()]));
        wp.get(name)![i] = w[i]! + h;
        wm.get(name)![i] = w[i]! - h;
        const numeric =
          (proximalPenalty(wp, global, mu) - proximalPenalty(wm, global, mu)) / (Math.fround(w[i]! + h) - Math.fround(w[i]! - h));
        expect(grads.get(name)![i]).toBeCloseTo(numeric, 4);
      }
    }
  });

  it("leaves gradients alone for μ = 0 and refuses bad μ or mismatched tensors", () => {
    const grads = tm({ a: [1, 2] });
    addProximalGradient(grads, tm({ a: [5, 5] }), tm({ a: [0, 0] }), 0);
    expect(plain(grads)).toEqual({ a: [1, 2] });
    expectFlError(() => addProximalGradient(grads, tm({ a: [0, 0] }), tm({ a: [0, 0] }), -0.1), "strategy_invalid", "proximalMu");
    expectFlError(() => addProximalGradient(grads, tm({ a: [0, 0] }), tm({ a: [0, 0] }), NaN), "strategy_invalid", "proximalMu");
    expectFlError(() => addProximalGradient(grads, tm({ a: [0, 0, 0] }), tm({ a: [0, 0, 0] }), 0.1), "tensor_mismatch", '"a"');
    expectFlError(() => addProximalGradient(grads, tm({ a: [0, 0] }), tm({ b: [0, 0] }), 0.1), "tensor_mismatch", "global");
  });
});
