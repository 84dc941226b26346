import { describe, expect, it } from "vitest";
import { FedflareError } from "../../src/errors.ts";
import { createStrategy, parseStrategyConfig } from "../../src/fl/create-strategy.ts";
import { expectFlError } from "./helpers.ts";

describe("parseStrategyConfig", () => {
  it("fills Flower's defaults", () => {
    expect(parseStrategyConfig({ name: "fedavg" })).toEqual({ name: "fedavg", serverLearningRate: 1 });
    expect(parseStrategyConfig({ name: "fedavgm" })).toEqual({ name: "fedavgm", serverLearningRate: 1, serverMomentum: 0 });
    expect(parseStrategyConfig({ name: "fedprox", proximalMu: 0.1 })).toEqual({ name: "fedprox", proximalMu: 0.1 });
    expect(parseStrategyConfig({ name: "fedadagrad" })).toEqual({ name: "fedadagrad", eta: 0.1, beta1: 0, tau: 1e-3 });
    expect(parseStrategyConfig({ name: "fedadam" })).toEqual({
      name: "fedadam",
      eta: 0.1,
      beta1: 0.9,
      beta2: 0.99,
      tau: 1e-3,
      biasCorrection: true,
    });
    expect(parseStrategyConfig({ name: "fedyogi" })).toEqual({ name: "fedyogi", eta: 1e-2, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
  });

  it("keeps the options given", () => {
    expect(parseStrategyConfig({ name: "fedadam", eta: 1e-2, beta1: 0.9, beta2: 0.99, tau: 1e-9 })).toEqual({
      name: "fedadam",
      eta: 1e-2,
      beta1: 0.9,
      beta2: 0.99,
      tau: 1e-9,
      biasCorrection: true,
    });
    for (const name of ["fedavg", "fedavgm", "fedadagrad", "fedadam", "fedyogi"]) expect(createStrategy({ name }).name).toBe(name);
  });

  it("refuses invalid options naming the field", () => {
    const cases: [unknown, string][] = [
      [{ name: "fedadam", beta1: 1 }, '"beta1"'],
      [{ name: "fedadam", beta2: -0.1 }, '"beta2"'],
      [{ name: "fedadam", beta_1: 0.9 }, '"beta_1"'],
      [{ name: "fedadam", eta: 0 }, '"eta"'],
      [{ name: "fedadam", eta: "0.1" }, '"eta"'],
      [{ name: "fedyogi", tau: NaN }, '"tau"'],
      [{ name: "fedadagrad", tau: 0 }, '"tau"'],
      [{ name: "fedadam", biasCorrection: "yes" }, '"biasCorrection"'],
      [{ name: "fedavg", serverLearningRate: Infinity }, '"serverLearningRate"'],
      [{ name: "fedavg", beta1: 0.9 }, '"beta1"'],
      [{ name: "fedavgm", serverMomentum: 1 }, '"serverMomentum"'],
      [{ name: "fedprox" }, '"proximalMu"'],
      [{ name: "fedprox", proximalMu: -1 }, '"proximalMu"'],
      [{ name: "fedsgd" }, '"name"'],
      [{}, '"name"'],
      [null, '"(root)"'],
      ["fedavg", '"(root)"'],
    ];
    for (const [config, field] of cases) {
      const err = expectFlError(() => createStrategy(config), "strategy_invalid", `field ${field}`);
      expect(err).toBeInstanceOf(FedflareError);
    }
  });
});
