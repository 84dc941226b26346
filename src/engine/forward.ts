// A Llama forward graph in a session, fed from token ids: builds position ids and the attention bias
// on the host and hands the graph its cache when it has one.
import type { LlamaConfig } from "./config.ts";
import { ModelError } from "./errors.ts";
import {
  llamaSession,
  trainableTensors,
  type ForwardGraph,
  type HiddenGraph,
  type StepGraph,
  type TrainableTensor,
  type Weights,
} from "./llama/graph.ts";
import { attentionBias, positionIds } from "./llama/masks.ts";
import type { HostTensor, Runtime, Session } from "./runtime.ts";

export interface KvCache {
  /** Present keys/values by layer, [B, kvHeads, P, headDim]. */
  keys: HostTensor[];
  values: HostTensor[];
  /** The mask over the P cached positions, [B * P]. */
  mask: number[];
  length: number;
}

export interface ForwardInput {
  /** [B][T] token ids; rows of one length (pad with any id and mask it). */
  ids: readonly (readonly number[])[];
  /** [B][T], 1 for real tokens; defaults to all ones. */
  mask?: readonly (readonly number[])[];
  /** [B][T] next-token targets, for forward graphs built with nll or logprobs. */
  targets?: readonly (readonly number[])[];
  /** The alternatives a graph built with logprobs ranks at each position: at least 1 (the default). */
  topK?: number;
  /**
   * Leaves the logits [B, S, V] in the session: a caller that reads only a scoring graph's outputs need not
   * have B·S·V floats copied out (16 MB for 8 rows of 128 tokens of a 4,096-word vocabulary).
   */
  skipLogits?: boolean;
  past?: KvCache;
  /** Values of the graph's input tensors, for a graph built with `inputs`. */
  params?: ReadonlyMap<string, Float32Array>;
}

export interface ForwardOutput {
  /** Empty for a hidden graph. */
  logits: Float32Array;
  /** [B, S, hidden] from a hidden graph. */
  hidden?: Float32Array;
  /** [B, S]: S = T, or n + T with an n-token soft prompt (its positions first, predicting nothing). */
  nll?: Float32Array;
  /** From a graph built with logprobs (see ForwardGraph.logprobs). */
  logprobs?: ScoredPositions;
  cache?: KvCache;
}

/** A logprobs graph's outputs per position of its [B, S] batch: log-probs as sampling.ts's logSoftmax computes them. */
export interface ScoredPositions {
  /** [B, S]: log p(targets[b][s] | the tokens up to s). */
  target: Float32Array;
  /** The alternatives ranked at each position. */
  k: number;
  /** [B, S, k]: the k largest log-probs, largest first, and their token ids (ties by lower id). */
  top: Float32Array;
  topIds: BigInt64Array;
  /** [B, V]: the logits at each row's last real position. */
  last: Float32Array;
}

/** Checks a batch and makes the feeds every Llama graph takes (ids, positions, attention bias, cache). */
export function llamaFeeds(
  c: LlamaConfig,
  input: Pick<ForwardInput, "ids" | "mask" | "past">,
  opts: { kvCache: boolean; softPromptTokens?: number; inlinePromptTokens?: number },
): { feeds: Record<string, HostTensor>; fullMask: number[]; total: number } {
  // Ids past the vocabulary name an inline soft prompt's tokens (TrainSpec.softPromptInline).
  const ids = c.vocabSize + (opts.inlinePromptTokens ?? 0);
  const B = input.ids.length;
  const T = input.ids[0]?.length ?? 0;
  if (B === 0 || T === 0) throw new ModelError("input_invalid", "forward: the batch is empty");
  for (const row of input.ids) {
    if (row.length !== T)
      throw new ModelError("input_invalid", `forward: rows have different lengths (${T} and ${row.length}); pad them and pass a mask`);
    for (const id of row)
      if (!Number.isInteger(id) || id < 0 || id >= ids)
        throw new ModelError(
          "input_invalid",
          `forward: token id ${id} is outside the vocabulary [0, ${c.vocabSize})${
            ids > c.vocabSize ? ` and the soft prompt's ids [${c.vocabSize}, ${ids})` : ""
          }`,
        );
  }
  const past = input.past;
  const P = past?.length ?? 0;
  // Soft-prompt positions come first in every row and are always attended to.
  const n = opts.softPromptTokens ?? 0;
  const S = n + T;
  if (P + S > c.maxPositions)
    throw new ModelError("input_invalid", `forward: ${P + S} positions exceed max_position_embeddings ${c.maxPositions}`);
  const fullMask: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < P; j++) fullMask.push(past!.mask[b * P + j]!);
    for (let j = 0; j < n; j++) fullMask.push(1);
    for (let t = 0; t < T; t++) fullMask.push(input.mask?.[b]?.[t] ?? 1);
  }
  const feeds: Record<string, HostTensor> = {
    input_ids: { data: BigInt64Array.from(input.ids.flat(), BigInt), dims: [B, T] },
    position_ids: { data: positionIds(fullMask, B, S, P), dims: [B, S] },
    attention_bias: { data: attentionBias(fullMask, B, S, P), dims: [B, 1, S, P + S] },
  };
  if (opts.kvCache)
    for (let l = 0; l < c.numLayers; l++) {
      const empty: HostTensor = { data: new Float32Array(0), dims: [B, c.numKvHeads, 0, c.headDim] };
      feeds[`past_key.${l}`] = past?.keys[l] ?? empty;
      feeds[`past_value.${l}`] = past?.values[l] ?? empty;
    }
  return { feeds, fullMask, total: P + S };
}

/** Feeds each tensor of `tensors` from `params`, checking that it is there with its size. */
export function feedParams(
  feeds: Record<string, HostTensor>,
  tensors: readonly TrainableTensor[],
  params: ReadonlyMap<string, Float32Array> | undefined,
  what: string,
): void {
  for (const t of tensors) {
    const p = params?.get(t.name);
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (!p || p.length !== size)
      throw new ModelError(
        "input_invalid",
        `${what}: "${t.name}" needs ${size} values ${JSON.stringify(t.shape)}, got ${p?.length ?? "none"}`,
      );
    feeds[t.name] = { data: p, dims: t.shape };
  }
}

export class ForwardModel {
  readonly config: LlamaConfig;
  /** The graph's input tensors (built with `inputs`), fed from ForwardInput.params. */
  readonly inputs: readonly TrainableTensor[];
  private readonly session: Session;
  private readonly opts: ForwardGraph | HiddenGraph | StepGraph;

  private constructor(config: LlamaConfig, session: Session, opts: ForwardGraph | HiddenGraph | StepGraph) {
    this.config = config;
    this.session = session;
    this.opts = opts;
    this.inputs = opts.kind === "forward" && opts.inputs ? trainableTensors(config, opts.inputs, opts.layerIndices) : [];
  }

  /** Positions a prefix soft prompt puts before each row's tokens (0 without one, or with an inline one). */
  get prefixPositions(): number {
    const inputs = this.opts.kind === "forward" ? this.opts.inputs : undefined;
    return inputs?.softPromptInline ? 0 : (inputs?.softPromptTokens ?? 0);
  }

  static async create(
    runtime: Runtime,
    config: LlamaConfig,
    weights: Weights,
    opts: ForwardGraph | HiddenGraph | StepGraph = { kind: "forward" },
  ): Promise<ForwardModel> {
    return new ForwardModel(config, await llamaSession(runtime, config, weights, opts), opts);
  }

  async run(input: ForwardInput): Promise<ForwardOutput> {
    const c = this.config;
    // A soft prompt (an input of this graph) adds n positions before the tokens, which predict nothing,
    // unless it is inline: then rows carry its ids among their tokens.
    const inputs = this.opts.kind === "forward" ? this.opts.inputs : undefined;
    const nll = this.opts.kind === "forward" && this.opts.nll;
    const logprobs = this.opts.kind === "forward" && this.opts.logprobs;
    const prompt = inputs?.softPromptTokens ?? 0;
    const inline = inputs?.softPromptInline ?? false;
    const n = inline ? 0 : prompt;
    const { feeds, fullMask, total } = llamaFeeds(c, input, {
      kvCache: this.opts.kind === "step",
      softPromptTokens: n,
      inlinePromptTokens: inline ? prompt : 0,
    });
    const B = input.ids.length;
    const S = n + input.ids[0]!.length;
    if (nll || logprobs) {
      if (!input.targets) throw new ModelError("input_invalid", "forward: this graph scores targets and needs them");
      // An inline prompt's ids are targets of the positions before them, which nothing scores: any id will do.
      const target = (id: number) => (id < c.vocabSize ? id : 0);
      feeds.targets = {
        data: BigInt64Array.from(
          input.targets.flatMap((r) => [...Array<number>(n).fill(0), ...r.map(target)]),
          BigInt,
        ),
        dims: [B, S],
      };
    }
    const k = input.topK ?? 1;
    if (logprobs) {
      if (!Number.isInteger(k) || k < 1 || k > c.vocabSize)
        throw new ModelError("input_invalid", `forward: topK must be an integer in [1, ${c.vocabSize}], got ${k}`);
      feeds.top_k = { data: BigInt64Array.of(BigInt(k)), dims: [1] };
      // Each row's last real position (rows are right-padded) among its S, as an index into the B·S
      // positions; fullMask holds the P cached positions of each row first.
      const P = total - S;
      const last = Array.from({ length: B }, (_, b) => b * S + Math.max(0, fullMask.lastIndexOf(1, (b + 1) * total - 1) - b * total - P));
      feeds.last_rows = { data: BigInt64Array.from(last, BigInt), dims: [B] };
    }
    feedParams(feeds, this.inputs, input.params, "forward");
    const out = await this.session.run(feeds, input.skipLogits ? this.session.outputNames.filter((o) => o !== "logits") : undefined);
    const result: ForwardOutput = { logits: (out.logits?.data as Float32Array | undefined) ?? new Float32Array(0) };
    if (this.opts.kind === "hidden") result.hidden = out.hidden!.data as Float32Array;
    if (nll) result.nll = out.nll!.data as Float32Array;
    if (logprobs)
      result.logprobs = {
        target: out.target_logprobs!.data as Float32Array,
        k,
        top: out.top_logprobs!.data as Float32Array,
        topIds: out.top_ids!.data as BigInt64Array,
        last: out.last_logits!.data as Float32Array,
      };
    if (this.opts.kind === "step") {
      const keys: HostTensor[] = [];
      const values: HostTensor[] = [];
      for (let l = 0; l < c.numLayers; l++) {
        keys.push(out[`present_key.${l}`]!);
        values.push(out[`present_value.${l}`]!);
      }
      result.cache = { keys, values, mask: fullMask, length: total };
    }
    return result;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
