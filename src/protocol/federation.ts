// Wire types of the federation API: the federation config a user posts, and what a client's upload
// carries besides its tensors. Each schema and its type together (valibot), parsed before use.
import * as v from "valibot";
import { LINEAR_MODULES } from "../engine/llama/names.ts";
import { ProtocolError } from "./errors.ts";
import { MAX_UPLOAD_BYTES } from "./platform-limits.ts";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));
const _positive = v.pipe(v.number(), v.gtValue(0), v.finite());
/** A number in (0, max]: learning rates, scales and step sizes are bounded so no config turns a version into infinities. */
const upTo = (max: number) => v.pipe(v.number(), v.gtValue(0), v.maxValue(max));
/** A classification task's labels: its completions are " " + label. */
const labels = v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(2));
/**
 * The verbalizer (PET, Schick and Schütze 2021; BBT): the word scored for each label, in the order of
 * `labels`, as " " + word. Defaults to the labels themselves; a base that was never taught the task's
 * label names ("ham" may even be two rare tokens) may still tell the classes apart by other words.
 */
const labelWords = v.optional(v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(2)));
/**
 * Where a learned prompt goes: "prefix" before the example (BBT, BDPL), or "suffix" between the example
 * and its label words, as AutoPrompt's trigger tokens (Shin et al. 2020). A small causal model barely
 * sees a prefix a hundred tokens back: on fedflare-mail-4m, no prefix phrase moves the spam task's label
 * scores by 0.1 nats, while suffix phrases move them by up to 2.
 */
const placement = v.optional(v.picklist(["prefix", "suffix"]), "prefix");
export type PromptPlacement = "prefix" | "suffix";
const id = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
);

export const LoraMethod = v.strictObject({
  type: v.literal("lora"),
  r: int(1, 256),
  alpha: upTo(1e4),
  targetModules: v.pipe(v.array(v.picklist(LINEAR_MODULES)), v.minLength(1)),
  dropout: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(0.9)), 0),
  rslora: v.optional(v.boolean(), false),
  /** LoRA only on the layers from this index up (PEFT's layers_to_transform); clients may offload the trunk below. */
  fromLayer: v.optional(int(0, 1000), 0),
});

/**
 * Offsite-tuning (Xiao, Lin and Han 2023): clients fully fine-tune the adapter — the bottom `bottom` and
 * top `top` decoder layers — on an emulator that keeps `middle` of the layers between, uniformly. The
 * operator supplies version 0 (the owner's adapter tensors) and hands clients the emulator.
 */
export const OffsiteMethod = v.strictObject({
  type: v.literal("offsite"),
  bottom: int(0, 1000),
  top: int(0, 1000),
  middle: int(0, 1000),
});

export type OffsiteMethod = v.InferOutput<typeof OffsiteMethod>;

/**
 * FedKSeed (Qin et al. 2024): forward-only two-point zeroth-order steps along perturbations drawn from a
 * pool of `k` seeds fixed per federation; uploads are the per-seed sums of the step scalars, and every
 * version is the cumulative scalar per seed (the model: w0 - local.lr * sum_j c_j z_j). `pro` samples
 * seeds by their history (FedKSeed-Pro). `trains`: LoRA pairs (PEFT's initialisation from the federation
 * seed as w0) or whole tensors of the base model (w0 = the model's own).
 */
export const FedKSeedMethod = v.strictObject({
  type: v.literal("fedkseed"),
  k: v.optional(int(1, 1 << 20), 4096),
  epsilon: v.optional(upTo(1), 1e-3),
  direction: v.optional(v.picklist(["gaussian", "rademacher"]), "gaussian"),
  pro: v.optional(v.boolean(), false),
  /**
   * For a classification task whose completions are " " + label: the steps' loss is the verbalizer
   * cross-entropy over these labels' words (BBT) instead of the completion's NLL.
   */
  labels: v.optional(labels),
  labelWords,
  trains: v.variant("type", [
    v.strictObject({
      type: v.literal("lora"),
      r: int(1, 256),
      alpha: upTo(1e4),
      targetModules: v.pipe(v.array(v.picklist(LINEAR_MODULES)), v.minLength(1)),
      rslora: v.optional(v.boolean(), false),
    }),
    v.strictObject({ type: v.literal("full"), tensors: v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1)) }),
  ]),
});
export type FedKSeedMethod = v.InferOutput<typeof FedKSeedMethod>;

/**
 * FedBPT (Sun et al., ICML 2024) over BBT's subspace: clients search z in R^`dimension` with CMA-ES for a
 * soft prompt of `promptTokens` tokens, p0 + A z, by the verbalizer cross-entropy of `labels`. A version
 * is the global mean z and step size (as `sigma2`, so averaging pools the clients' step sizes); an
 * upload is the client's mean and squared step size after its generations. A client's round is
 * `generations`, each scored on `local.batchSize` examples; `local.steps` and `local.lr` are not used.
 */
export const FedBptMethod = v.strictObject({
  type: v.literal("fedbpt"),
  promptTokens: v.optional(int(1, 256), 10),
  dimension: v.optional(int(1, 10_000), 100),
  sigma: v.optional(upTo(1e3), 1),
  generations: v.optional(int(1, 10_000), 8),
  population: v.optional(int(2, 1000)),
  /** FedBPT's perturbation rate: with it above 0, fitness is the cross-entropy over that on a copy with this share of tokens random. */
  perturb: v.optional(v.pipe(v.number(), v.minValue(0), v.ltValue(1)), 0),
  labels,
  labelWords,
  placement,
});
export type FedBptMethod = v.InferOutput<typeof FedBptMethod>;

/**
 * Discrete prompts through any OpenAI-compatible /v1/completions (BDPL, Diao et al. 2023; federated:
 * FedOne, Wang et al. 2025): `slots` prompt positions, each a categorical distribution over `phrases`,
 * learned by a policy gradient on the verbalizer cross-entropy of `labels`. A version is the
 * distributions [slots, phrases]; an upload is the client's change of them. `population` prompts are
 * sampled per step; `queryBudget` caps the rows (prompt + label sequences) a client scores per round.
 * A round is `local.steps` policy-gradient steps at `local.lr`, each on `local.batchSize` examples.
 * FedOne is `clientsPerRound: 1`.
 */
export const DiscretePromptMethod = v.strictObject({
  type: v.literal("discrete"),
  slots: v.optional(int(1, 64), 4),
  phrases: v.pipe(
    v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(64))),
    v.minLength(2),
    v.maxLength(4096),
    v.check((xs) => new Set(xs).size === xs.length, "phrases must be unique"),
  ),
  population: v.optional(int(2, 256), 4),
  queryBudget: v.optional(int(1, 1_000_000_000)),
  labels,
  labelWords,
  placement,
});
export type DiscretePromptMethod = v.InferOutput<typeof DiscretePromptMethod>;

export const Method = v.pipe(
  v.variant("type", [LoraMethod, OffsiteMethod, FedKSeedMethod, FedBptMethod, DiscretePromptMethod]),
  v.check(
    (m) => !("labelWords" in m) || m.labelWords === undefined || m.labelWords.length === m.labels?.length,
    "method.labelWords needs one word per label, in the order of method.labels",
  ),
);
export type Method = v.InferOutput<typeof Method>;

/** The words a method scores for its labels: its labelWords, or the labels themselves. */
export function labelWordsOf(m: { labels: readonly string[]; labelWords?: readonly string[] | undefined }): readonly string[] {
  return m.labelWords ?? m.labels;
}

export const FederationConfig = v.pipe(
  v.strictObject({
    id,
    /**
     * The base model every client loads: its name, its Hugging Face config.json (the aggregator needs only
     * the shapes), and the quantization clients run it in. Where the weights live is each client's deployment.
     */
    model: v.strictObject({
      name: v.pipe(v.string(), v.minLength(1), v.maxLength(256)),
      config: v.record(v.string(), v.unknown()),
      quant: v.optional(v.picklist(["f32", "int8", "int4"]), "int8"),
    }),
    method: Method,
    /** Validated in full by the strategy factory (src/fl/create-strategy.ts). */
    strategy: v.looseObject({ name: v.string() }),
    rounds: int(1, 10_000),
    clients: v.pipe(
      v.array(id),
      v.minLength(1),
      v.maxLength(10_000),
      v.check((xs) => new Set(xs).size === xs.length, "client ids must be unique"),
    ),
    clientsPerRound: int(1),
    /** Uploads that close a round at once; defaults to clientsPerRound. */
    quorum: v.optional(int(1)),
    /** Uploads a round needs by its deadline, or it fails. */
    minClients: int(1),
    local: v.strictObject({ steps: int(1, 100_000), batchSize: int(1, 1024), lr: upTo(10), maxTokens: v.optional(int(2, 8192), 128) }),
    deadlineSeconds: v.pipe(v.number(), v.minValue(1), v.maxValue(7 * 24 * 3600)),
    seed: v.optional(int(0, 2 ** 32 - 1), 0),
    /** Largest upload body accepted, in bytes: at most what crosses one Durable Object RPC call (platform-limits.ts). */
    maxUploadBytes: v.optional(int(1024, MAX_UPLOAD_BYTES), MAX_UPLOAD_BYTES),
    /** The most examples one upload may claim: its weight in the mean is capped by it. */
    maxExamplesPerClient: v.optional(int(1, 1_000_000_000), 100_000),
    /** Global versions kept besides version 0; older ones are pruned as rounds close, so storage stays bounded. */
    keepVersions: v.optional(int(1, 100_000), 50),
  }),
  v.check((c) => c.clientsPerRound <= c.clients.length, "clientsPerRound cannot exceed the number of clients"),
  v.check((c) => c.minClients <= c.clientsPerRound, "minClients cannot exceed clientsPerRound"),
  v.check(
    (c) => (c.quorum ?? c.clientsPerRound) <= c.clientsPerRound && (c.quorum ?? c.clientsPerRound) >= c.minClients,
    "quorum must lie between minClients and clientsPerRound",
  ),
);
export type FederationConfig = v.InferOutput<typeof FederationConfig>;

/** An upload's metrics: a few named finite numbers, so receipts and round results stay small rows. */
export const METRICS_LIMITS = { keys: 16, keyLength: 64, jsonBytes: 2048 } as const;

/** What an upload's safetensors `__metadata__` holds besides the format (all strings on the wire). */
export const UploadMetadata = v.strictObject({
  format: v.optional(v.string()),
  num_examples: v.pipe(v.string(), v.regex(/^[1-9][0-9]{0,9}$/, "must be a positive integer")),
  /** JSON object of numeric metrics, e.g. {"train_loss": 1.23}. */
  metrics: v.optional(
    v.pipe(v.string(), v.maxLength(METRICS_LIMITS.jsonBytes, `must be at most ${METRICS_LIMITS.jsonBytes} characters`)),
    "{}",
  ),
});

const Metrics = v.pipe(
  v.record(
    v.pipe(
      v.string(),
      v.regex(/^[A-Za-z0-9_.-]+$/, "metric names are letters, digits, '_', '.' or '-'"),
      v.maxLength(METRICS_LIMITS.keyLength),
    ),
    v.pipe(v.number(), v.finite()),
  ),
  v.check((m) => Object.keys(m).length <= METRICS_LIMITS.keys, `at most ${METRICS_LIMITS.keys} metrics`),
);

export type ConfigErrorCode = "config_invalid" | "metadata_invalid";

export class ConfigError extends ProtocolError<ConfigErrorCode> {}

function firstIssue(issues: readonly v.BaseIssue<unknown>[], what: string): string {
  const issue = issues[0]!;
  return `${what}: field "${v.getDotPath(issue) ?? "(root)"}": ${issue.message}`;
}

export function parseFederationConfig(json: unknown): FederationConfig {
  const r = v.safeParse(FederationConfig, json);
  if (!r.success) throw new ConfigError("config_invalid", firstIssue(r.issues, "federation config"));
  return r.output;
}

export interface UploadInfo {
  numExamples: number;
  metrics: Record<string, number>;
}

export function parseUploadMetadata(metadata: Record<string, string>): UploadInfo {
  const r = v.safeParse(UploadMetadata, metadata);
  if (!r.success) throw new ConfigError("metadata_invalid", firstIssue(r.issues, "upload __metadata__"));
  let metrics: unknown;
  try {
    metrics = JSON.parse(r.output.metrics);
  } catch {
    throw new ConfigError("metadata_invalid", 'upload __metadata__: field "metrics": not valid JSON');
  }
  const m = v.safeParse(Metrics, metrics);
  if (!m.success) throw new ConfigError("metadata_invalid", firstIssue(m.issues, 'upload __metadata__ "metrics"'));
  return { numExamples: Number(r.output.num_examples), metrics: m.output };
}
