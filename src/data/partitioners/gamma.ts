// Gamma and Dirichlet draws from a seeded uniform, for Dirichlet label skew (dirichlet.ts).

/** A standard normal draw (Box-Muller); 1 - u keeps the logarithm's argument in (0, 1]. */
function standardNormal(uniform: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/**
 * The logarithm of a Gamma(shape, 1) draw. Marsaglia & Tsang (2000), "A simple method for generating
 * gamma variables", for shape ≥ 1; for shape < 1 their boost Gamma(a) = Gamma(a + 1) · U^(1/a). Kept in
 * log space because U^(1/a) underflows to 0 for small a (alpha = 0.01 gives U^100), which would leave a
 * Dirichlet draw of all zeros.
 */
export function logGammaVariate(shape: number, uniform: () => number): number {
  if (shape < 1) return logGammaVariate(shape + 1, uniform) + Math.log(1 - uniform()) / shape;
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = standardNormal(uniform);
    const t = 1 + c * x;
    if (t <= 0) continue;
    const v = t * t * t;
    const u = 1 - uniform();
    // The cheap squeeze first, then the exact acceptance test.
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return Math.log(d * v);
  }
}

/** A draw from the symmetric Dirichlet(alpha) over `n` categories: normalised Gamma(alpha) draws. */
export function dirichletVariate(alpha: number, n: number, uniform: () => number): number[] {
  const logs = Array.from({ length: n }, () => logGammaVariate(alpha, uniform));
  const max = Math.max(...logs);
  const weights = logs.map((l) => Math.exp(l - max));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}
