// FedBPT (Sun et al., "FedBPT: efficient federated black-box prompt tuning", ICML 2024) over BBT's
// subspace (Sun et al., "Black-box tuning for language-model-as-a-service", ICML 2022): a soft prompt of
// n tokens is p0 + A z, z in R^d searched by CMA-ES on the label words' cross-entropy; A (n*hidden x d)
// is random from a shared seed, made a column at a time and never held whole. Each round a client runs
// CMA-ES from the global mean and step size; the server recombines the clients' means (weighted by
// examples) and pools their step sizes: only d + 1 numbers cross the wire each way, never a d x d matrix.
import type { LlamaConfig } from "../../../engine/config.ts";
import { ForwardModel } from "../../../engine/forward.ts";
import { SOFT_PROMPT, type InputSpec, type Weights } from "../../../engine/llama/graph.ts";
import { EMBED } from "../../../engine/llama/names.ts";
import { floatOf } from "../../../engine/quantize.ts";
import { keptSession, type KeptSessions, type Runtime } from "../../../engine/runtime.ts";
import { leadingSpecialIds, type TextTokenizer } from "../../../engine/tokenizer/load.ts";
import type { TokenizedExample } from "../../../data/examples.ts";
import {
  accuracyOfScores,
  checkLabels,
  exampleNlls,
  labelRows,
  scoresOfLabelRows,
  wordIds,
  type LabeledPrompt,
} from "../../../engine/train/evaluate.ts";
import { labelWordsOf, type PromptPlacement } from "../shared/config-fields.ts";
import { rowNllsAt, type ScoringEndpoint } from "../../client/endpoint-scores.ts";
import { ask, cmaParameters, initialCma, tell, type CmaState } from "../../cma/cma-es.ts";
import { direction, philox4x32 } from "../../directions.ts";

/** A FedBPT version: the global mean z, [d], and squared step size, [1] (averaging squares pools the step sizes). */
export const BPT_MEAN = "mean";
export const BPT_SIGMA2 = "sigma2";

export interface BbtSpace {
  /** Soft-prompt tokens n. */
  promptTokens: number;
  /** The subspace's dimension d. */
  dimension: number;
  /** The federation's seed: A's columns and p0's tokens. */
  seed: number;
}

/** The scale of A's entries: the embedding's standard deviation over sqrt(d) (BBT's choice, so A z ~ embeddings for z ~ N(0, I)). */
export function projectionScale(_c: LlamaConfig, weights: Weights, d: number): number {
  const e = floatOf(weights.get(EMBED)!);
  const mean = e.reduce((s, x) => s + x, 0) / e.length;
  return Math.sqrt(e.reduce((s, x) => s + (x - mean) ** 2, 0) / e.length) / Math.sqrt(d);
}

/** A z: column i of A is scale * the seeded Gaussian direction "fedbpt/A/i" of n * hidden elements. */
export function project(z: readonly number[], space: BbtSpace, hidden: number, scale: number): Float32Array {
  const out = new Float32Array(space.promptTokens * hidden);
  z.forEach((zi, i) => {
    if (zi === 0) return;
    const column = direction("gaussian", space.seed, `fedbpt/A/${i}`, out.length);
    for (let k = 0; k < out.length; k++) out[k]! += scale * zi * column[k]!;
  });
  return out;
}

/** p0: the embeddings of n vocabulary tokens drawn from the federation's seed (BBT starts from real token embeddings). */
export function initialPrompt(c: LlamaConfig, weights: Weights, space: BbtSpace): Float32Array {
  const e = floatOf(weights.get(EMBED)!);
  const out = new Float32Array(space.promptTokens * c.hiddenSize);
  for (let t = 0; t < space.promptTokens; t++) {
    const id = philox4x32([t, 0, 0, 0], [space.seed >>> 0, 0xb87])[0]! % c.vocabSize;
    out.set(e.subarray(id * c.hiddenSize, (id + 1) * c.hiddenSize), t * c.hiddenSize);
  }
  return out;
}

/**
 * How a soft prompt of n tokens enters a forward graph: a prefix (BBT), or, placed as a suffix, inline
 * after each prompt as the ids vocabSize..vocabSize+n-1 (`after`), so the label words follow it directly.
 */
export function softPromptLayout(c: LlamaConfig, n: number, placement: PromptPlacement): { inputs: InputSpec; after: number[] } {
  if (placement === "prefix") return { inputs: { softPromptTokens: n }, after: [] };
  return { inputs: { softPromptTokens: n, softPromptInline: true }, after: Array.from({ length: n }, (_, k) => c.vocabSize + k) };
}

/**
 * FedBPT's perturbed copy of the data: each prompt token (not the leading special tokens) replaced by a
 * uniform vocabulary id with probability `rate`, by the draws of a fresh `draws()` stream, so every
 * candidate of a generation meets the same copy.
 */
export interface DataNoise {
  rate: number;
  draws: () => () => number;
}

export interface PromptScorer {
  /** Accuracy and the verbalizer cross-entropy of the soft prompt p0 + A z on the items (or their perturbed copy). */
  score(z: readonly number[], items: readonly LabeledPrompt[], noise?: DataNoise): Promise<{ accuracy: number; crossEntropy: number }>;
  release(): Promise<void>;
}

/** z to the soft prompt p0 + A z (p0 and A's scale made once). */
export function softPromptOf(c: LlamaConfig, weights: Weights, space: BbtSpace): (z: readonly number[]) => Float32Array {
  const p0 = initialPrompt(c, weights, space);
  const scale = projectionScale(c, weights, space.dimension);
  return (z) => {
    const offset = project(z, space, c.hiddenSize, scale);
    return p0.map((x, i) => x + offset[i]!);
  };
}

/** Each row's summed NLL over its trained tokens under the soft prompt of z, wherever it is computed. */
export type PromptRowNlls = (rows: readonly TokenizedExample[], z: readonly number[]) => Promise<number[]>;

export type BbtVerbalizer = { labels: readonly string[]; labelWords?: readonly string[] | undefined; placement?: PromptPlacement };

/** Scores soft prompts by the label words' rows: each prompt, the soft prompt's ids if it is a suffix, a label word. */
export function promptScorer(
  rowNlls: PromptRowNlls,
  c: LlamaConfig,
  tok: TextTokenizer,
  space: BbtSpace,
  verbalizer: BbtVerbalizer,
  maxTokens: number,
  release: () => Promise<void> = async () => {},
): PromptScorer {
  const { after } = softPromptLayout(c, space.promptTokens, verbalizer.placement ?? "prefix");
  const words = wordIds(tok, labelWordsOf(verbalizer));
  const head = leadingSpecialIds(tok).length;
  const perturbed = (ids: number[], noise: DataNoise | undefined, u: (() => number) | undefined) =>
    noise && u ? ids.map((id, t) => (t >= head && u() < noise.rate ? Math.floor(u() * c.vocabSize) : id)) : ids;
  return {
    async score(z, items, noise) {
      checkLabels(items, verbalizer.labels);
      const u = noise?.draws();
      const rows = labelRows(
        items.map((x) => [...perturbed(tok.encode(x.prompt), noise, u), ...after]),
        words,
        maxTokens,
      );
      return accuracyOfScores(scoresOfLabelRows(await rowNlls(rows, z), words.length), items, verbalizer.labels);
    },
    release,
  };
}

/** Scores prompts at an inference endpoint (POST /v1/prompt-scores), which projects z itself: only token ids and z go out. */
export function endpointPromptScorer(
  ep: ScoringEndpoint,
  c: LlamaConfig,
  tok: TextTokenizer,
  space: BbtSpace,
  verbalizer: BbtVerbalizer,
  maxTokens: number,
): PromptScorer {
  const placement = verbalizer.placement ?? "prefix";
  return promptScorer(
    (rows, z) =>
      rowNllsAt(ep, "/v1/prompt-scores", rows, {
        prompt: { tokens: space.promptTokens, dimension: space.dimension, seed: space.seed, placement, z },
      }),
    c,
    tok,
    space,
    verbalizer,
    maxTokens,
  );
}

/**
 * Scores prompts with a local forward graph that takes the soft prompt as an input, kept in `sessions`
 * when given (the scorer's release then leaves it to their owner).
 */
export async function localPromptScorer(
  runtime: Runtime,
  c: LlamaConfig,
  weights: Weights,
  tok: TextTokenizer,
  space: BbtSpace,
  verbalizer: BbtVerbalizer,
  maxTokens: number,
  sessions?: KeptSessions,
): Promise<PromptScorer> {
  const graph = {
    kind: "forward",
    nll: true,
    inputs: softPromptLayout(c, space.promptTokens, verbalizer.placement ?? "prefix").inputs,
  } as const;
  const { session: model, release } = await keptSession(sessions, JSON.stringify(graph), () =>
    ForwardModel.create(runtime, c, weights, graph),
  );
  const prompt = softPromptOf(c, weights, space);
  return promptScorer(
    (rows, z) => exampleNlls(model, rows, 8, undefined, new Map([[SOFT_PROMPT, prompt(z)]])),
    c,
    tok,
    space,
    verbalizer,
    maxTokens,
    release,
  );
}

export interface BbtGlobal {
  mean: number[];
  sigma: number;
}

export interface BbtClientResult extends BbtGlobal {
  numExamples: number;
  /** Forward evaluations of candidate prompts (each over the client's examples). */
  evaluations: number;
  /** The verbalizer cross-entropy of the client's final mean on its own examples. */
  loss: number;
}

export interface BbtClientState {
  cma: CmaState;
  evaluations: number;
  /** The best fitness of the last generation (the verbalizer cross-entropy, or its ratio with perturbation). */
  lastBest: number;
}

export function startBbt(global: BbtGlobal, seed: number): BbtClientState {
  return { cma: initialCma(global.mean, global.sigma, seed), evaluations: 0, lastBest: NaN };
}

/**
 * `generations` more CMA-ES generations, each scored on the items `itemsOf(generation)` gives (resumable:
 * the state is plain data). With `noiseOf`, a candidate's fitness is its cross-entropy on the items over
 * that on their perturbed copy (FedBPT's perturbation, against overfitting a client's few examples): a
 * prompt scores well for helping on the text, not on noise.
 */
export async function bbtGenerations(
  scorer: PromptScorer,
  state: BbtClientState,
  itemsOf: (generation: number) => readonly LabeledPrompt[],
  generations: number,
  population?: number,
  noiseOf?: (generation: number) => DataNoise,
): Promise<BbtClientState> {
  const params = cmaParameters(state.cma.dimension, population);
  let { cma, evaluations, lastBest } = state;
  for (let g = 0; g < generations; g++) {
    const items = itemsOf(cma.generation);
    const noise = noiseOf?.(cma.generation);
    const candidates = ask(cma, params);
    const fitness = [];
    for (const z of candidates) {
      const clean = (await scorer.score(z, items)).crossEntropy;
      fitness.push(noise ? clean / (await scorer.score(z, items, noise)).crossEntropy : clean);
    }
    evaluations += candidates.length * (noise ? 2 : 1);
    lastBest = Math.min(...fitness.filter(Number.isFinite));
    cma = tell(cma, params, candidates, fitness);
  }
  return { cma, evaluations, lastBest };
}

/** A client's round: `generations` of CMA-ES from the global mean and step size on its examples. */
export async function bbtClientRound(
  scorer: PromptScorer,
  global: BbtGlobal,
  items: readonly LabeledPrompt[],
  o: { generations: number; population?: number; seed: number },
): Promise<BbtClientResult> {
  const state = await bbtGenerations(scorer, startBbt(global, o.seed), () => items, o.generations, o.population);
  return {
    mean: state.cma.mean,
    sigma: state.cma.sigma,
    numExamples: items.length,
    evaluations: state.evaluations,
    loss: (await scorer.score(state.cma.mean, items)).crossEntropy,
  };
}

/** The server's step: the clients' means recombined by their examples, their step sizes pooled (root mean square, weighted). */
export function bbtAggregate(results: readonly Pick<BbtClientResult, "mean" | "sigma" | "numExamples">[]): BbtGlobal {
  const total = results.reduce((s, r) => s + r.numExamples, 0);
  const d = results[0]!.mean.length;
  const mean = Array.from({ length: d }, (_, i) => results.reduce((s, r) => s + r.numExamples * r.mean[i]!, 0) / total);
  const sigma = Math.sqrt(results.reduce((s, r) => s + r.numExamples * r.sigma ** 2, 0) / total);
  return { mean, sigma };
}

/** A version's tensors as the global state: `mean` [d] and `sigma2` [1]. */
export function bbtGlobalOf(tensors: ReadonlyMap<string, Float32Array>): BbtGlobal {
  const mean = tensors.get(BPT_MEAN);
  const sigma2 = tensors.get(BPT_SIGMA2);
  if (!mean || !sigma2 || sigma2.length !== 1 || !(sigma2[0]! > 0))
    throw new RangeError(`a FedBPT version holds "${BPT_MEAN}" [d] and a positive "${BPT_SIGMA2}" [1]`);
  return { mean: [...mean], sigma: Math.sqrt(sigma2[0]!) };
}

/**
 * A client's upload as a change of the version: its mean minus the global mean, its squared step size
 * minus the global one. Averaged by examples and added (FedAvg), they give bbtAggregate's recombination.
 */
export function bbtDelta(global: BbtGlobal, result: Pick<BbtClientResult, "mean" | "sigma">): Map<string, Float32Array> {
  return new Map([
    [BPT_MEAN, Float32Array.from(result.mean, (m, i) => m - global.mean[i]!)],
    [BPT_SIGMA2, Float32Array.of(result.sigma ** 2 - global.sigma ** 2)],
  ]);
}
