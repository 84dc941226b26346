// The RDP accountant (src/privacy/rdp.ts) against the test vectors of Google's dp_accounting
// (python/dp_accounting/rdp/rdp_privacy_accountant_test.py) and of Opacus (opacus/tests/
// accountants_test.py, the doctest of opacus/accountants/analysis/rdp.py), and against the analytic
// Gaussian mechanism's optimal δ (Balle and Wang 2018, Theorem 8), which no RDP bound may undercut.
// At fractional orders the two libraries differ (Opacus keeps the series' signs, dp_accounting sums its
// absolute values since 2024); this accountant is Opacus's there, and both agree at integer orders.
import erfc from "@stdlib/math-base-special-erfc";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_ORDERS,
  deltaFromRdp,
  epsilonFromRdp,
  logA,
  noiseForEpsilon,
  privacySpent,
  rdpSubsampledGaussian,
} from "../../src/privacy/rdp.ts";

const relativelyClose = (got: number, want: number, rtol: number) =>
  expect(Math.abs(got - want)).toBeLessThanOrEqual(rtol * Math.abs(want));

describe("the RDP accountant of the subsampled Gaussian", () => {
  // dp_accounting's test_compute_log_a_equals_mp cases (which it checks against an mpmath integral), at
  // the exact series' values.
  it("computes log A at integer and fractional orders, far into the tails", () => {
    const vectors: [q: number, sigma: number, alpha: number, logA: number][] = [
      [1e-7, 0.1, 1.01, 4.0034136e-8],
      [1e-6, 0.1, 256, 3260463.2293],
      [1e-5, 0.1, 256.1, 3263607.0398],
      [1e-6, 1, 27, 8.7695035e-10],
      [1e-4, 1, 1.5, 6.4426873e-9],
      [1e-3, 1, 2, 1.7182804e-6],
      [0.01, 10, 20, 1.91297e-4],
      [0.1, 100, 20.5, 1.999182e-4],
      [0.99, 0.1, 256, 3263997.4271],
      [0.999, 100, 256.1, 3.260108],
    ];
    for (const [q, sigma, alpha, want] of vectors) relativelyClose(logA(q, sigma, alpha), want, 1e-4);
  });

  it("composes over steps: q = 0.01, σ = 2.5, 50 steps, dp_accounting's values at integer orders, the exact series at 1.5", () => {
    const rdp = rdpSubsampledGaussian({ sampleRate: 0.01, noiseMultiplier: 2.5, steps: 50 }, [1.5, 2.5, 5, 50, 100, Infinity]);
    // dp_accounting's expected values at the integer orders 5, 50 and 100 (rtol 1e-4).
    [2.18075656e-3, 2.38460375e-2, 1.67416308e2].forEach((want, k) => relativelyClose(rdp[k + 2]!, want, 1e-4));
    expect(rdp[5]).toBe(Infinity);
    // At α = 1.5 the signed series gives 6.5007e-4, below dp_accounting's absolute-value bound 6.70579741e-4.
    relativelyClose(rdp[0]!, 6.5007e-4, 1e-4);
    expect(rdp[0]!).toBeLessThan(6.70579741e-4 - 1e-5);
    // RDP adds over steps; q = 1 is the plain Gaussian, α / (2σ²) a step.
    const one = rdpSubsampledGaussian({ sampleRate: 0.01, noiseMultiplier: 2.5, steps: 1 }, [3, 7.5]);
    const six = rdpSubsampledGaussian({ sampleRate: 0.01, noiseMultiplier: 2.5, steps: 6 }, [3, 7.5]);
    six.forEach((r, k) => relativelyClose(r, 6 * one[k]!, 1e-12));
    relativelyClose(
      rdpSubsampledGaussian({ sampleRate: 1, noiseMultiplier: Math.E, steps: 1 }, [Math.PI])[0]!,
      Math.PI / (2 * Math.E ** 2),
      1e-12,
    );
  });

  it("converts RDP to ε by the improved bound: constant RDP 1.1 on orders 2..32 gives ε 1.32783806176 at order 32, and back", () => {
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const rdp = orders.map(() => 1.1);
    const spent = epsilonFromRdp(orders, rdp, 1e-5);
    expect(spent.epsilon).toBeCloseTo(1.32783806176, 9);
    expect(spent.order).toBe(32);
    const back = deltaFromRdp(orders, rdp, 1.32783806176);
    expect(back.delta).toBeCloseTo(1e-5, 12);
    expect(back.order).toBe(32);
    // The older bound r − log δ / (α − 1) is looser at every order.
    expect(Math.min(...orders.map((a) => 1.1 - Math.log(1e-5) / (a - 1)))).toBeGreaterThan(spent.epsilon + 0.1);
  });

  it("calibrates: the Gaussian σ = 4.530877117 is (1, 1e-6)-DP over fine orders", () => {
    const orders = Array.from({ length: 98_999 }, (_, i) => 0.001 * (i + 1001));
    const spent = privacySpent({ sampleRate: 1, noiseMultiplier: 4.530877117, steps: 1 }, 1e-6, orders);
    expect(spent.epsilon).toBeCloseTo(1, 7);
    expect(deltaFromRdp(orders, spent.rdp, 1).delta).toBeCloseTo(1e-6, 12);
  });

  it("never claims less than the optimal δ of the Gaussian mechanism, and meets its tail bound", () => {
    const orders = Array.from({ length: 495 }, (_, i) => 1 + 0.1 * i).filter((a) => a > 1);
    const rdp = rdpSubsampledGaussian({ sampleRate: 1, noiseMultiplier: 1, steps: 1 }, orders);
    for (let k = 0; k < 500; k++) {
      const eps = 0.1 * k;
      const optimal = 0.5 * erfc((eps - 0.5) / Math.SQRT2) - Math.exp(eps) * 0.5 * erfc((eps + 0.5) / Math.SQRT2);
      const { delta } = deltaFromRdp(orders, rdp, eps);
      // Past ε ≈ 37 both are subnormal and the analytic δ's difference of two tails is rounding noise.
      if (optimal > 1e-300) expect(delta).toBeGreaterThanOrEqual(optimal);
      if (eps >= 0.5) expect(delta).toBeLessThanOrEqual(Math.exp(-0.5 * (eps - 0.5) ** 2));
    }
  });

  it("round-trips ε(δ) to δ, and keeps the edge cases: no sampling, no noise, δ = 0", () => {
    const orders = Array.from({ length: 48 }, (_, i) => i + 2);
    for (const q of [0, 0.01, 0.1, 0.8, 1])
      for (const sigma of [0, 0.1, 1, 10, 100]) {
        const rdp = rdpSubsampledGaussian({ sampleRate: q, noiseMultiplier: sigma, steps: 1 }, orders);
        for (const delta of [0.99, 0.9, 0.1, 0.01, 1e-3, 1e-5, 1e-9, 1e-12]) {
          const { epsilon } = epsilonFromRdp(orders, rdp, delta);
          const back = deltaFromRdp(orders, rdp, epsilon).delta;
          if (epsilon === Infinity) expect(back).toBe(1);
          else if (epsilon === 0) expect(back).toBeLessThanOrEqual(delta);
          else relativelyClose(back, delta, 1e-6);
        }
      }
    expect(privacySpent({ sampleRate: 0, noiseMultiplier: 1, steps: 10 }, 1e-5).epsilon).toBe(0);
    expect(privacySpent({ sampleRate: 0.1, noiseMultiplier: 0, steps: 10 }, 1e-5).epsilon).toBe(Infinity);
    expect(epsilonFromRdp([2, 3], [0, 0], 0).epsilon).toBe(0);
    expect(epsilonFromRdp([2, 3], [0.1, 0.2], 0).epsilon).toBe(Infinity);
    // A tiny rate and a large σ put the series below double precision: RDP 0, never a negative refused as input.
    expect(rdpSubsampledGaussian({ sampleRate: 1e-8, noiseMultiplier: 1000, steps: 1 }).every((r) => r >= 0)).toBe(true);
    expect(noiseForEpsilon({ sampleRate: 1e-4, steps: 1, delta: 1e-12, targetEpsilon: 1e-4 })).toBeGreaterThan(0);
  });

  it("matches Opacus: ε 7.32911117143 at q 0.04, σ 1.5, 2,250 steps on its orders; 0.336 at order 23 for two mechanisms composed", () => {
    const opacusOrders = [...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10), ...Array.from({ length: 52 }, (_, x) => 12 + x)];
    expect(privacySpent({ sampleRate: 0.04, noiseMultiplier: 1.5, steps: 2250 }, 1e-5, opacusOrders).epsilon).toBeCloseTo(7.32911117143, 7);
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const a = rdpSubsampledGaussian({ sampleRate: 1e-5, noiseMultiplier: 1, steps: 10 }, orders);
    const b = rdpSubsampledGaussian({ sampleRate: 1e-4, noiseMultiplier: 3, steps: 4 }, orders);
    const spent = epsilonFromRdp(
      orders,
      a.map((x, i) => x + b[i]!),
      1e-5,
    );
    expect(spent.epsilon).toBeCloseTo(0.336, 3);
    expect(spent.order).toBe(23);
    // Opacus's get_noise_multiplier (q 0.04, 2,000 steps, ε 8) stops its bisection within 0.01 of ε and
    // answers 1.3562; the smallest multiplier lies just under it.
    const sigma = noiseForEpsilon({ sampleRate: 0.04, steps: 2000, delta: 1e-5, targetEpsilon: 8 }, opacusOrders);
    expect(sigma).toBeLessThanOrEqual(1.3562);
    expect(sigma).toBeGreaterThan(1.3562 - 1e-3);
  });

  it("finds the smallest noise multiplier for a target ε, which reaches it and one 0.1% smaller does not", () => {
    const target = { sampleRate: 0.01, steps: 1000, delta: 1e-5, targetEpsilon: 2 };
    const sigma = noiseForEpsilon(target);
    const at = (s: number) => privacySpent({ sampleRate: 0.01, noiseMultiplier: s, steps: 1000 }, 1e-5).epsilon;
    expect(at(sigma)).toBeLessThanOrEqual(2);
    expect(at(sigma * 0.999)).toBeGreaterThan(2);
  });

  it("refuses out-of-range parameters with a message naming them", () => {
    expect(() => rdpSubsampledGaussian({ sampleRate: 1.5, noiseMultiplier: 1, steps: 1 })).toThrow(/sample rate is in \[0, 1\], got 1.5/);
    expect(() => rdpSubsampledGaussian({ sampleRate: 0.1, noiseMultiplier: -1, steps: 1 })).toThrow(/noise multiplier/);
    expect(() => rdpSubsampledGaussian({ sampleRate: 0.1, noiseMultiplier: 1, steps: 2.5 })).toThrow(/steps are a whole number/);
    expect(() => rdpSubsampledGaussian({ sampleRate: 0.1, noiseMultiplier: 1, steps: 1 }, [1])).toThrow(/order is > 1, got 1/);
    expect(() => epsilonFromRdp([2], [0.1], 2)).toThrow(/δ is in \[0, 1\]/);
    expect(() => noiseForEpsilon({ sampleRate: 0.1, steps: 1, delta: 1e-5, targetEpsilon: 0 })).toThrow(/target ε/);
    expect(DEFAULT_ORDERS.every((a) => a > 1)).toBe(true);
  });
});
