// Discrete prompt learning through an inference API (BDPL, Diao et al., "Black-box prompt learning for
// pre-trained language models", TMLR 2023; federated: FedOne, Wang et al., ICML 2025): a prompt of
// `slots` positions, each a categorical distribution over candidate phrases; prompts are sampled,
// scored by the API, and the distributions follow a variance-reduced policy gradient (the score function
// of the sampled phrases, a leave-one-out baseline), projected back onto the simplex.

/** Euclidean projection onto the probability simplex (Duchi et al. 2008, sort-based). */
export function projectToSimplex(v: readonly number[]): number[] {
  const u = [...v].sort((a, b) => b - a);
  let cumulative = 0;
  let theta = 0;
  for (let k = 0; k < u.length; k++) {
    cumulative += u[k]!;
    const t = (cumulative - 1) / (k + 1);
    if (u[k]! - t > 0) theta = t;
  }
  return v.map((x) => Math.max(x - theta, 0));
}

/** One phrase index per slot, drawn from each slot's distribution with one uniform number each. */
export function samplePrompt(distributions: readonly (readonly number[])[], uniforms: readonly number[]): number[] {
  return distributions.map((p, s) => {
    let acc = 0;
    const u = uniforms[s]!;
    for (let k = 0; k < p.length; k++) {
      acc += p[k]!;
      if (u < acc) return k;
    }
    return p.length - 1;
  });
}

/**
 * One policy-gradient step from `samples` (each a prompt and its loss). The gradient of the expected
 * loss is E[(L - b) grad log pi(prompt)]; for slot s with probabilities p, grad_p log p[a_s] is
 * e_{a_s} / p[a_s]. b is the mean loss of the other samples (leave-one-out, unbiased); each slot then
 * steps against the gradient and is projected onto the simplex.
 */
export function policyGradientStep(
  distributions: readonly (readonly number[])[],
  samples: readonly { prompt: readonly number[]; loss: number }[],
  lr: number,
): number[][] {
  const n = samples.length;
  if (n < 2) throw new RangeError("a variance-reduced policy gradient needs at least two samples");
  const total = samples.reduce((s, x) => s + x.loss, 0);
  return distributions.map((p, slot) => {
    const grad = p.map(() => 0);
    for (const x of samples) {
      const baseline = (total - x.loss) / (n - 1);
      const k = x.prompt[slot]!;
      grad[k]! += (x.loss - baseline) / Math.max(p[k]!, 1e-12) / n;
    }
    return projectToSimplex(p.map((q, k) => q - lr * grad[k]!));
  });
}

/** FedAvg of the clients' distributions, slot by slot, weighted by their examples (a mean of simplex points stays on it). */
export function averageDistributions(
  clients: readonly { distributions: readonly (readonly number[])[]; numExamples: number }[],
): number[][] {
  const total = clients.reduce((s, c) => s + c.numExamples, 0);
  return clients[0]!.distributions.map((p, slot) =>
    p.map((_, k) => clients.reduce((s, c) => s + c.numExamples * c.distributions[slot]![k]!, 0) / total),
  );
}

/**
 * Candidate phrases mined from a client's labelled prompts: the words with the highest pointwise mutual
 * information with some label, log p(word, label) / (p(word) p(label)), over words seen at least `minCount` times.
 */
export function pmiPhrases(items: readonly { prompt: string; label: string }[], count: number, minCount = 3): string[] {
  const words = (t: string) => [...new Set(t.toLowerCase().match(/[a-z][a-z']+/g) ?? [])];
  const wordCount = new Map<string, number>();
  const joint = new Map<string, number>();
  const labelCount = new Map<string, number>();
  for (const x of items) {
    labelCount.set(x.label, (labelCount.get(x.label) ?? 0) + 1);
    for (const w of words(x.prompt)) {
      wordCount.set(w, (wordCount.get(w) ?? 0) + 1);
      joint.set(`${w}\u0000${x.label}`, (joint.get(`${w}\u0000${x.label}`) ?? 0) + 1);
    }
  }
  const n = items.length;
  const best = new Map<string, number>();
  for (const [key, c] of joint) {
    const [w, label] = key.split("\u0000") as [string, string];
    if (wordCount.get(w)! < minCount) continue;
    const pmi = Math.log(c / n / ((wordCount.get(w)! / n) * (labelCount.get(label)! / n)));
    best.set(w, Math.max(best.get(w) ?? -Infinity, pmi));
  }
  return [...best]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, count)
    .map(([w]) => w);
}
