// Optimizers over named float32 tensors, in place. State is plain data so training can stop and resume
// (a Worker splits long local work across invocations).

export interface OptimizerState {
  kind: "adamw" | "sgd";
  step: number;
  /** Per tensor: AdamW's first and second moments (`m.<name>`, `v.<name>`), or SGD's momentum (`buf.<name>`). */
  slots: Map<string, Float32Array>;
}

export interface Optimizer {
  /** Applies one update with learning rate `lr` to every tensor in `params` that has a gradient. */
  step(params: Map<string, Float32Array>, grads: ReadonlyMap<string, Float32Array>, lr: number): void;
  readonly state: OptimizerState;
}

function slot(state: OptimizerState, key: string, size: number): Float32Array {
  let s = state.slots.get(key);
  if (!s) {
    s = new Float32Array(size);
    state.slots.set(key, s);
  }
  return s;
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** AdamW (Loshchilov & Hutter 2019) as torch.optim.AdamW: decoupled decay, bias-corrected moments. */
export function adamW(opts: AdamWOptions = {}, state: OptimizerState = { kind: "adamw", step: 0, slots: new Map() }): Optimizer {
  const { beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = opts;
  return {
    state,
    step(params, grads, lr) {
      state.step++;
      const c1 = 1 - beta1 ** state.step;
      const c2 = 1 - beta2 ** state.step;
      for (const [name, p] of params) {
        const g = grads.get(name);
        if (!g) continue;
        const m = slot(state, `m.${name}`, p.length);
        const v = slot(state, `v.${name}`, p.length);
        const decay = 1 - lr * weightDecay;
        for (let i = 0; i < p.length; i++) {
          m[i] = beta1 * m[i]! + (1 - beta1) * g[i]!;
          v[i] = beta2 * v[i]! + (1 - beta2) * g[i]! * g[i]!;
          p[i] = p[i]! * decay - (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + eps);
        }
      }
    },
  };
}

export interface SgdOptions {
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

/** SGD with momentum as torch.optim.SGD (no dampening): buf = mu buf + g; p -= lr buf (or g + mu buf, Nesterov). */
export function sgd(opts: SgdOptions = {}, state: OptimizerState = { kind: "sgd", step: 0, slots: new Map() }): Optimizer {
  const { momentum = 0, nesterov = false, weightDecay = 0 } = opts;
  return {
    state,
    step(params, grads, lr) {
      state.step++;
      for (const [name, p] of params) {
        const g = grads.get(name);
        if (!g) continue;
        const buf = momentum ? slot(state, `buf.${name}`, p.length) : null;
        for (let i = 0; i < p.length; i++) {
          const d = g[i]! + weightDecay * p[i]!;
          if (!buf) {
            p[i] = p[i]! - lr * d;
            continue;
          }
          // torch initialises the buffer with the first gradient, which mu * 0 + d gives.
          buf[i] = momentum * buf[i]! + d;
          p[i] = p[i]! - lr * (nesterov ? d + momentum * buf[i]! : buf[i]!);
        }
      }
    },
  };
}

/** Scales all gradients together so their global L2 norm is at most `maxNorm`; returns the norm before. */
export function clipGradNorm(grads: Map<string, Float32Array>, maxNorm: number): number {
  let sq = 0;
  for (const g of grads.values()) for (const x of g) sq += x * x;
  const norm = Math.sqrt(sq);
  if (norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i]! *= scale;
  }
  return norm;
}
