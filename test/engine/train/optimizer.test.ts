import { describe, expect, it } from "vitest";
import { adamW, clipGradNorm, sgd } from "../../../src/engine/train/optimizer.ts";
import { learningRate } from "../../../src/engine/train/schedule.ts";

const one = (x: number[]) => new Map([["w", Float32Array.from(x)]]);

describe("AdamW", () => {
  it("takes a first step of lr * sign(g) (bias correction), with decoupled weight decay", () => {
    const p = one([1, -2]);
    adamW({ weightDecay: 0.1 }).step(p, one([0.5, -3]), 0.01);
    // p * (1 - lr wd) - lr * g / |g|
    expect(p.get("w")![0]).toBeCloseTo(1 * (1 - 0.001) - 0.01, 6);
    expect(p.get("w")![1]).toBeCloseTo(-2 * (1 - 0.001) + 0.01, 6);
  });

  it("matches torch.optim.AdamW over two steps computed by hand", () => {
    const p = one([0.5]);
    const opt = adamW({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    opt.step(p, one([0.2]), 0.1);
    opt.step(p, one([-0.4]), 0.1);
    // step 2: m = 0.9*0.02 + 0.1*-0.4 = -0.022; v = 0.999*4e-5 + 0.001*0.16 = 1.9996e-4
    const m = -0.022 / (1 - 0.81);
    const v = 1.9996e-4 / (1 - 0.998001);
    expect(p.get("w")![0]).toBeCloseTo(0.5 - 0.1 - (0.1 * m) / (Math.sqrt(v) + 1e-8), 5);
    expect(opt.state.step).toBe(2);
  });

  it("resumes from its state exactly", () => {
    const a = one([1, 2]);
    const b = one([1, 2]);
    const full = adamW();
    const first = adamW();
    for (const g of [
      [0.1, 0.2],
      [0.3, -0.1],
      [-0.2, 0.5],
    ])
      full.step(a, one(g), 0.05);
    first.step(b, one([0.1, 0.2]), 0.05);
    const resumed = adamW(
      {},
      { kind: "adamw", step: first.state.step, slots: new Map([...first.state.slots].map(([k, v]) => [k, Float32Array.from(v)])) },
    );
    for (const g of [
      [0.3, -0.1],
      [-0.2, 0.5],
    ])
      resumed.step(b, one(g), 0.05);
    expect(b.get("w")).toEqual(a.get("w"));
  });
});

describe("SGD", () => {
  it("with momentum 0.9: p -= lr * (0.9 buf + g)", () => {
    const p = one([1]);
    const opt = sgd({ momentum: 0.9 });
    opt.step(p, one([1]), 0.1); // buf 1 -> 0.9
    opt.step(p, one([1]), 0.1); // buf 1.9 -> 0.71
    expect(p.get("w")![0]).toBeCloseTo(0.71, 6);
  });

  it("with Nesterov and weight decay", () => {
    const p = one([2]);
    sgd({ momentum: 0.5, nesterov: true, weightDecay: 0.1 }).step(p, one([1]), 0.1);
    // d = 1 + 0.2 = 1.2; buf = 1.2; update = d + 0.5 buf = 1.8
    expect(p.get("w")![0]).toBeCloseTo(2 - 0.18, 6);
  });
});

describe("clipGradNorm", () => {
  it("scales to the max norm across tensors and reports the norm before", () => {
    const g = new Map([
      ["a", Float32Array.from([3])],
      ["b", Float32Array.from([4])],
    ]);
    expect(clipGradNorm(g, 1)).toBeCloseTo(5, 6);
    expect(g.get("a")![0]).toBeCloseTo(0.6, 5);
    expect(g.get("b")![0]).toBeCloseTo(0.8, 5);
    const small = new Map([["a", Float32Array.from([0.3])]]);
    clipGradNorm(small, 1);
    expect(small.get("a")![0]).toBeCloseTo(0.3, 7);
  });
});

describe("learningRate", () => {
  const s = { lr: 1, warmupSteps: 4, totalSteps: 14, minLr: 0.1 };
  it("warms up linearly, then follows a cosine down to the floor", () => {
    expect([0, 1, 2, 3].map((i) => learningRate(i, s))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(learningRate(4, s)).toBeCloseTo(1, 10);
    expect(learningRate(9, s)).toBeCloseTo(0.55, 10);
    expect(learningRate(14, s)).toBeCloseTo(0.1, 10);
    expect(learningRate(100, s)).toBeCloseTo(0.1, 10);
  });
});
