import * as v from "valibot";
import { readSlots, writeSlots } from "../server-state.ts";
import type { Strategy } from "../strategy.ts";
import type { TensorMap } from "../tensors.ts";
import { makeStrategy } from "./base.ts";
import { decay, positive } from "./options.ts";

/**
 * FedOpt (Reddi et al. 2021, Algorithm 2): the part FedAdagrad, FedAdam and FedYogi share, as Flower's
 * `FedOpt._compute_deltat_and_mt`. With Δ_t the weighted mean of the client deltas (Flower's
 * `aggregated − current`, i.e. minus the pseudo-gradient) and t the server round from 1:
 *   m_t = β1·m_{t−1} + (1 − β1)·Δ_t          (m_0 = 0)
 *   v_t = secondMoment(v_{t−1}, Δ_t)          (v_0 = 0, as Flower; the paper takes v_{−1} ≥ τ²)
 *   x_{t+1} = x_t + η_t·m_t / (√v_t + τ)
 * elementwise. Each strategy adds only its second moment and, for FedAdam, its η_t. Slots: "m", "v".
 * Moments are stored as float32 and x_{t+1} is computed from the stored values, so a resumed server
 * computes what an uninterrupted one would.
 */

/** The options every FedOpt strategy has, with that strategy's defaults. */
export function fedOptFields(defaults: { eta: number; beta1: number; tau: number }) {
  return {
    eta: v.optional(positive, defaults.eta),
    beta1: v.optional(decay, defaults.beta1),
    tau: v.optional(positive, defaults.tau),
  };
}

export interface FedOptOptions {
  /** Server learning rate η. */
  eta: number;
  /** First-moment decay β1. */
  beta1: number;
  /** Adaptivity τ, added to √v_t. */
  tau: number;
}

/** What a FedOpt strategy adds to the shared part. */
export interface FedOptRule {
  /** v_t of one element from v_{t−1} (0 at the first round) and Δ_t. */
  secondMoment(v: number, delta: number): number;
  /** η_t at server round t (from 1); η when absent. */
  etaAt?(t: number): number;
}

export function createFedOpt(name: string, options: FedOptOptions, rule: FedOptRule): Strategy {
  const { eta, beta1, tau } = options;
  return makeStrategy(name, (global, meanDelta, state) => {
    const previous = readSlots(state, global, ["m", "v"]);
    const etaT = rule.etaAt ? rule.etaAt(state.round + 1) : eta;
    const out: TensorMap = new Map();
    const ms: TensorMap = new Map();
    const vs: TensorMap = new Map();
    for (const [name, x] of global) {
      const d = meanDelta.get(name)!;
      const mPrev = previous?.get("m")?.get(name) ?? null;
      const vPrev = previous?.get("v")?.get(name) ?? null;
      const m = new Float32Array(x.length);
      const vv = new Float32Array(x.length);
      const next = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) {
        const di = d[i]!;
        m[i] = beta1 * (mPrev === null ? 0 : mPrev[i]!) + (1 - beta1) * di;
        vv[i] = rule.secondMoment(vPrev === null ? 0 : vPrev[i]!, di);
        next[i] = x[i]! + (etaT * m[i]!) / (Math.sqrt(vv[i]!) + tau);
      }
      out.set(name, next);
      ms.set(name, m);
      vs.set(name, vv);
    }
    return {
      global: out,
      slots: writeSlots(
        new Map([
          ["m", ms],
          ["v", vs],
        ]),
      ),
    };
  });
}
