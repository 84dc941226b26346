// CMA-ES, the covariance matrix adaptation evolution strategy, with the default parameters and update
// equations of Hansen, "The CMA Evolution Strategy: A Tutorial" (2016, arXiv:1604.00772): weighted
// recombination of the best half, cumulative step-size adaptation, rank-one and rank-mu covariance
// updates. Its state is plain data (resumable across Worker invocations); sampling is seeded.
import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import { direction } from "../directions.ts";

export interface CmaState {
  dimension: number;
  generation: number;
  mean: number[];
  sigma: number;
  /** Row-major d x d covariance. */
  covariance: number[];
  pathC: number[];
  pathSigma: number[];
  seed: number;
}

export interface CmaParameters {
  lambda: number;
  mu: number;
  weights: number[];
  muEff: number;
  cSigma: number;
  dSigma: number;
  cC: number;
  c1: number;
  cMu: number;
  /** E||N(0, I)||. */
  chiN: number;
}

/** The tutorial's defaults for dimension n (population lambda = 4 + floor(3 ln n) unless given). */
export function cmaParameters(n: number, lambda = 4 + Math.floor(3 * Math.log(n))): CmaParameters {
  const mu = Math.floor(lambda / 2);
  const raw = Array.from({ length: mu }, (_, i) => Math.log((lambda + 1) / 2) - Math.log(i + 1));
  const total = raw.reduce((a, b) => a + b, 0);
  const weights = raw.map((w) => w / total);
  const muEff = 1 / weights.reduce((a, w) => a + w * w, 0);
  const cSigma = (muEff + 2) / (n + muEff + 5);
  const c1 = 2 / ((n + 1.3) ** 2 + muEff);
  return {
    lambda,
    mu,
    weights,
    muEff,
    cSigma,
    dSigma: 1 + 2 * Math.max(0, Math.sqrt((muEff - 1) / (n + 1)) - 1) + cSigma,
    cC: (4 + muEff / n) / (n + 4 + (2 * muEff) / n),
    c1,
    cMu: Math.min(1 - c1, (2 * (muEff - 2 + 1 / muEff)) / ((n + 2) ** 2 + muEff)),
    chiN: Math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n)),
  };
}

export function initialCma(mean: readonly number[], sigma: number, seed = 0): CmaState {
  const n = mean.length;
  if (n < 1 || !(sigma > 0))
    throw new RangeError(`CMA-ES needs a mean of at least one dimension and a positive step size, got ${n} and ${sigma}`);
  return {
    dimension: n,
    generation: 0,
    mean: [...mean],
    sigma,
    covariance: Matrix.eye(n).to1DArray(),
    pathC: Array(n).fill(0),
    pathSigma: Array(n).fill(0),
    seed,
  };
}

/** B D (C = B D^2 B^T), and C^(-1/2) = B D^-1 B^T. */
function decompose(state: CmaState): { bd: Matrix; invSqrt: Matrix } {
  const n = state.dimension;
  const c = Matrix.from1DArray(n, n, state.covariance);
  const eig = new EigenvalueDecomposition(c, { assumeSymmetric: true });
  const b = eig.eigenvectorMatrix;
  const d = eig.realEigenvalues.map((x) => Math.sqrt(Math.max(x, 1e-300)));
  return { bd: b.mmul(Matrix.diag(d)), invSqrt: b.mmul(Matrix.diag(d.map((x) => 1 / x))).mmul(b.transpose()) };
}

/** The generation's lambda candidates m + sigma B D z, z standard normal from (seed, generation, k). */
export function ask(state: CmaState, params: CmaParameters): number[][] {
  const { bd } = decompose(state);
  return Array.from({ length: params.lambda }, (_, k) => {
    const z = Matrix.columnVector([...direction("gaussian", state.seed, `cma/${state.generation}/${k}`, state.dimension)]);
    const y = bd.mmul(z).to1DArray();
    return state.mean.map((m, i) => m + state.sigma * y[i]!);
  });
}

/** The next state from the candidates of `ask` and their fitness (lower is better; NaN ranks last). */
export function tell(
  state: CmaState,
  params: CmaParameters,
  candidates: readonly (readonly number[])[],
  fitness: readonly number[],
): CmaState {
  const n = state.dimension;
  if (candidates.length !== params.lambda || fitness.length !== params.lambda)
    throw new RangeError(`tell needs the ${params.lambda} candidates of ask and their fitness`);
  const order = fitness
    .map((f, k) => [Number.isNaN(f) ? Infinity : f, k] as const)
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .map(([, k]) => k);
  const best = order.slice(0, params.mu).map((k) => candidates[k]!);
  const { invSqrt } = decompose(state);
  // y_i = (x_i - m) / sigma; y_w their weighted mean; the new mean m + sigma y_w.
  const ys = best.map((x) => x.map((v, i) => (v - state.mean[i]!) / state.sigma));
  const yw = Array.from({ length: n }, (_, i) => ys.reduce((s, y, j) => s + params.weights[j]! * y[i]!, 0));
  const mean = state.mean.map((m, i) => m + state.sigma * yw[i]!);
  const cs = params.cSigma;
  const step = invSqrt.mmul(Matrix.columnVector(yw)).to1DArray();
  const pathSigma = state.pathSigma.map((p, i) => (1 - cs) * p + Math.sqrt(cs * (2 - cs) * params.muEff) * step[i]!);
  const psNorm = Math.hypot(...pathSigma);
  const hSigma = psNorm / Math.sqrt(1 - (1 - cs) ** (2 * (state.generation + 1))) < (1.4 + 2 / (n + 1)) * params.chiN ? 1 : 0;
  const cc = params.cC;
  const pathC = state.pathC.map((p, i) => (1 - cc) * p + hSigma * Math.sqrt(cc * (2 - cc) * params.muEff) * yw[i]!);
  const { c1, cMu } = params;
  // Rank-one (with the tutorial's correction when h_sigma stalls the path) and rank-mu updates.
  const keep = 1 - c1 - cMu + (1 - hSigma) * c1 * cc * (2 - cc);
  const covariance = state.covariance.map((x, idx) => {
    const i = Math.floor(idx / n);
    const j = idx % n;
    const rankMu = ys.reduce((s, y, k) => s + params.weights[k]! * y[i]! * y[j]!, 0);
    return keep * x + c1 * pathC[i]! * pathC[j]! + cMu * rankMu;
  });
  const sigma = state.sigma * Math.exp((cs / params.dSigma) * (psNorm / params.chiN - 1));
  return { dimension: n, generation: state.generation + 1, mean, sigma, covariance, pathC, pathSigma, seed: state.seed };
}
