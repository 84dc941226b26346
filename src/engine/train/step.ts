// One training graph in a session: given a batch and the current trainable tensors, the loss and the
// gradient of every trainable tensor.
import type { LlamaConfig } from "../config.ts";
import { ModelError } from "../errors.ts";
import { feedParams, llamaFeeds } from "../forward.ts";
import {
  llamaSession,
  trainableTensors,
  type SplitGraph,
  type TrainableTensor,
  type TrainGraph,
  type TrainSpec,
  type Weights,
} from "../llama/graph.ts";
import type { Runtime, Session } from "../runtime.ts";

export interface TrainBatch {
  /** [B][T] token ids (padded rows of one length). */
  ids: readonly (readonly number[])[];
  /** [B][T] 1 for real tokens. */
  mask?: readonly (readonly number[])[];
  /** [B][T] next-token targets (any id where the weight is 0). */
  targets: readonly (readonly number[])[];
  /** [B][T] weight of each position's NLL in the loss (e.g. 1 / number of predicted tokens). */
  lossWeights: readonly (readonly number[])[];
  /** [B, T, hidden]: the trunk's hidden states, for a split graph (from a cut layer). */
  hidden?: Float32Array;
  /** [B, T, hidden]: the teacher's hidden states, for a graph with a distillation term (spec.distill). */
  teacherHidden?: Float32Array;
}

export interface StepResult {
  loss: number;
  /** Per-position NLL [B*S] (S includes soft-prompt positions), for metrics. */
  nll: Float32Array;
  grads: Map<string, Float32Array>;
  /** The distillation term of the loss, when the spec has one. */
  distillLoss?: number;
}

export class TrainStep {
  readonly config: LlamaConfig;
  readonly spec: TrainSpec;
  readonly tensors: readonly TrainableTensor[];
  private readonly session: Session;
  private readonly split: boolean;

  private constructor(config: LlamaConfig, graph: TrainGraph | SplitGraph, session: Session) {
    this.config = config;
    this.spec = graph.spec;
    this.tensors = trainableTensors(config, graph.spec, graph.kind === "train" ? graph.layerIndices : undefined);
    this.session = session;
    this.split = graph.kind === "split";
  }

  static async create(runtime: Runtime, config: LlamaConfig, weights: Weights, graph: TrainGraph | SplitGraph): Promise<TrainStep> {
    return new TrainStep(config, graph, await llamaSession(runtime, config, weights, graph));
  }

  async run(batch: TrainBatch, params: ReadonlyMap<string, Float32Array>): Promise<StepResult> {
    const n = this.spec.softPromptTokens ?? 0;
    const { feeds } = llamaFeeds(this.config, batch, { kvCache: false, softPromptTokens: n });
    const B = batch.ids.length;
    const S = n + batch.ids[0]!.length;
    // Soft-prompt positions predict nothing: target 0 with weight 0.
    const pad = <T>(rows: readonly (readonly T[])[], fill: T) => rows.flatMap((r) => [...Array<T>(n).fill(fill), ...r]);
    feeds.targets = { data: BigInt64Array.from(pad(batch.targets, 0), BigInt), dims: [B, S] };
    feeds.loss_weights = { data: Float32Array.from(pad(batch.lossWeights, 0)), dims: [B, S] };
    if (this.split) {
      // The upper part starts from the trunk's hidden states, not from token ids.
      if (!batch.hidden || batch.hidden.length !== B * S * this.config.hiddenSize)
        throw new ModelError(
          "input_invalid",
          `train step: this split graph needs the trunk's hidden states [${B}, ${S}, ${this.config.hiddenSize}]`,
        );
      delete feeds.input_ids;
      feeds.hidden_in = { data: batch.hidden, dims: [B, S, this.config.hiddenSize] };
    }
    if (this.spec.distill) {
      const H = this.config.hiddenSize;
      if (!batch.teacherHidden || batch.teacherHidden.length !== B * S * H)
        throw new ModelError("input_invalid", `train step: distillation needs the teacher's hidden states [${B}, ${S}, ${H}]`);
      feeds.teacher_hidden = { data: batch.teacherHidden, dims: [B, S, H] };
      // Every real position counts the same; the term is their mean.
      const mask = (batch.mask ?? batch.ids.map((r) => r.map(() => 1))).flat();
      const real = mask.reduce((a, b) => a + b, 0);
      feeds.distill_weights = { data: Float32Array.from(mask, (m) => m / real), dims: [B, S] };
    }
    feedParams(feeds, this.tensors, params, "train step");
    const out = await this.session.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const t of this.tensors) grads.set(t.name, out[`grad.${t.name}`]!.data as Float32Array);
    return {
      loss: (out.loss!.data as Float32Array)[0]!,
      nll: out.nll!.data as Float32Array,
      grads,
      ...(out.distill_loss ? { distillLoss: (out.distill_loss.data as Float32Array)[0]! } : {}),
    };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
