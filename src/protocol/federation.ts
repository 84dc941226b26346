// Wire types of the federation API: the federation config a user posts, and what a client's upload
// carries besides its tensors. Each schema and its type together (valibot), parsed before use.
import * as v from "valibot";
import { firstIssue } from "../errors.ts";
import { ProtocolError } from "./errors.ts";
import { MAX_UPLOAD_BYTES } from "./platform-limits.ts";
import { PrivacyConfig } from "./privacy.ts";
import { RobustConfig } from "./robust.ts";
import { SecureAggregationConfig } from "./secure-aggregation.ts";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));
/**
 * Shards a federation may have: the root reads every shard's partial sum at each close (an adapter's size
 * from each), so the close's reads grow with the count; 64 spreads 10,000 uploads to about 160 an object.
 */
export const MAX_SHARDS = 64;
/** The dtypes a federation may ask its clients to upload in. */
export const UPLOAD_DTYPES = ["F32", "F16", "BF16", "I8"] as const;
export type UploadDType = (typeof UPLOAD_DTYPES)[number];
/** A number in (0, max]: learning rates are bounded so no config turns a version into infinities. */
const upTo = (max: number) => v.pipe(v.number(), v.gtValue(0), v.maxValue(max));
const id = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
);

/**
 * A method config: its `type` names a registered method (src/fl/methods/), whose own schema validates the
 * rest where the method runs (the aggregator, a client, `fedflare run`).
 */
export const MethodField = v.looseObject({ type: v.pipe(v.string(), v.minLength(1), v.maxLength(64)) });
/** What every client of a round runs: its steps, examples a step, learning rate and tokens an example. */
export const LocalConfig = v.strictObject({
  steps: int(1, 100_000),
  batchSize: int(1, 1024),
  lr: upTo(10),
  maxTokens: v.optional(int(2, 8192), 128),
});
/** The quantization clients run the base model in. */
export const ModelQuant = v.picklist(["f32", "int8", "int4"]);
/** The dtypes a version may be downloaded in. */
export const DownloadDType = v.picklist(["F32", "F16", "BF16"]);
/** The fraction of each tensor a sparse update sends. */
export const TopK = v.pipe(v.number(), v.gtValue(0), v.maxValue(1));
/** A federation's seed. */
export const FederationSeed = int(0, 2 ** 32 - 1);

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
      quant: v.optional(ModelQuant, "int8"),
    }),
    method: MethodField,
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
    local: LocalConfig,
    deadlineSeconds: v.pipe(v.number(), v.minValue(1), v.maxValue(7 * 24 * 3600)),
    seed: v.optional(FederationSeed, 0),
    /** Largest upload body accepted, in bytes: at most what crosses one Durable Object RPC call (platform-limits.ts). */
    maxUploadBytes: v.optional(int(1024, MAX_UPLOAD_BYTES), MAX_UPLOAD_BYTES),
    /** The most examples one upload may claim: its weight in the mean is capped by it. */
    maxExamplesPerClient: v.optional(int(1, 1_000_000_000), 100_000),
    /**
     * The memory each client has, in MiB: a federation whose clients would need more at every placement
     * the method can take is refused at creation (src/engine/client-plan.ts). 128: a Worker's.
     */
    clientMemoryMiB: v.optional(int(16, 1 << 20), 128),
    /** Global versions kept besides version 0; older ones are pruned as rounds close, so storage stays bounded. */
    keepVersions: v.optional(int(1, 100_000), 50),
    /**
     * Rounds whose per-client detail (each upload's receipt, the clients sampled) is kept, and versions asked to be
     * evaluated whose clients' reports are; an older round keeps its row and result, an older evaluation its mean.
     * At least 2, so a client retrying its upload to the round before the latest still gets its receipt. Absent:
     * as many as fit a tenth of the object's storage (durable-objects/aggregator/storage-budget.ts).
     */
    keepRoundDetail: v.optional(int(2, 10_000)),
    /** Client-level differential privacy (src/privacy/): clipping, noise and the ε it spends; absent: none. */
    privacy: v.optional(PrivacyConfig),
    /** Secure aggregation (SecAgg+, src/secagg/): the aggregator sees only the sum of masked updates; absent: plain uploads. */
    secureAggregation: v.optional(SecureAggregationConfig),
    /** Robust aggregation (src/fl/robust/): norm bounding, weight caps, a rule other than the mean; absent: FedAvg's mean. */
    robust: v.optional(RobustConfig),
    /** Federated evaluation: every k-th version is asked of the clients to evaluate as it is made (absent: on request only). */
    evaluateEvery: v.optional(int(1, 10_000)),
    /**
     * Shard objects a round's uploads spread over, each folding its clients' uploads into a partial sum that the
     * federation's object combines at the close (docs/ARCHITECTURE.md, "Sharded aggregation"); absent: 1.
     */
    shards: v.optional(int(1, MAX_SHARDS)),
    /**
     * The dtype clients upload a gradient method's update in: F16 or BF16 halve the bytes up, I8 (a scale per
     * tensor, stochastic rounding: src/fl/int8-updates.ts) quarters them; the aggregator folds in float32
     * whatever it reads; absent: F32.
     */
    uploadDtype: v.optional(v.picklist(UPLOAD_DTYPES)),
    /**
     * Top-k sparsification with error feedback (src/fl/sparse-updates.ts): clients upload, of each tensor of a
     * gradient method's update, this fraction of its values largest in magnitude (F32, with their positions),
     * and add what they did not send to their next update; absent: dense updates.
     */
    topK: v.optional(TopK),
    /**
     * The dtype clients download versions in (GET .../versions/{v}?dtype=): F16 or BF16 halve the bytes down; the
     * aggregator keeps F32 and adds the mean change to it; absent: F32.
     */
    downloadDtype: v.optional(DownloadDType),
  }),
  v.check((c) => c.clientsPerRound <= c.clients.length, "clientsPerRound cannot exceed the number of clients"),
  v.check((c) => c.minClients <= c.clientsPerRound, "minClients cannot exceed clientsPerRound"),
  v.check((c) => (c.shards ?? 1) <= c.clientsPerRound, "shards cannot exceed clientsPerRound (a shard would fold nobody's upload)"),
  v.check(
    (c) => (c.quorum ?? c.clientsPerRound) <= c.clientsPerRound && (c.quorum ?? c.clientsPerRound) >= c.minClients,
    "quorum must lie between minClients and clientsPerRound",
  ),
);
type J0 = string | number | boolean | null;
type J1 = J0 | J0[] | { [key: string]: J0 };
type J2 = J1 | J1[] | { [key: string]: J1 };
/**
 * JSON values three levels deep: what a method config holds besides its type, typed so it crosses Workers
 * RPC as it is (a recursive JSON type is too deep for hono's response types).
 */
export type MethodJson = { type: string; [key: string]: J2 | J2[] | { [key: string]: J2 } };
export type FederationConfig = Omit<v.InferOutput<typeof FederationConfig>, "method"> & { method: MethodJson };

/**
 * An upload's metrics: a few named numbers, so receipts and round results stay small rows, each of magnitude
 * at most 1e12 (bytes downloaded pass 1e6), so the example-weighted mean over a round stays finite.
 */
export const METRICS_LIMITS = { keys: 16, keyLength: 64, jsonBytes: 2048, magnitude: 1e12 } as const;

/**
 * One page of a federation's round metrics (GET .../metrics?from=&limit=): at most `rounds` rounds, and past
 * its first, at most `bytes` characters of round results, so a page stays far inside the 32 MiB RPC limit
 * however many rounds a federation has had.
 */
export const METRICS_PAGE = { rounds: 1000, bytes: 4 * 2 ** 20 } as const;

/** What an upload's safetensors `__metadata__` holds besides the format (all strings on the wire). */
export const UploadMetadata = v.strictObject({
  format: v.optional(v.string()),
  num_examples: v.pipe(v.string(), v.regex(/^[1-9][0-9]{0,9}$/, "must be a positive integer")),
  /** JSON object of numeric metrics, e.g. {"train_loss": 1.23}. */
  metrics: v.optional(
    v.pipe(v.string(), v.maxLength(METRICS_LIMITS.jsonBytes, `must be at most ${METRICS_LIMITS.jsonBytes} characters`)),
    "{}",
  ),
  /** An int8 upload's scale of each I8 tensor (JSON), checked with its tensors (src/fl/int8-updates.ts). */
  scales: v.optional(v.string()),
});

export const Metrics = v.pipe(
  v.record(
    v.pipe(
      v.string(),
      v.regex(/^[A-Za-z0-9_.-]+$/, "metric names are letters, digits, '_', '.' or '-'"),
      v.maxLength(METRICS_LIMITS.keyLength),
    ),
    v.pipe(
      v.number(),
      v.minValue(-METRICS_LIMITS.magnitude, "a metric lies in [-1e12, 1e12]"),
      v.maxValue(METRICS_LIMITS.magnitude, "a metric lies in [-1e12, 1e12]"),
    ),
  ),
  v.check((m) => Object.keys(m).length <= METRICS_LIMITS.keys, `at most ${METRICS_LIMITS.keys} metrics`),
);

export type ConfigErrorCode = "config_invalid" | "metadata_invalid";

export class ConfigError extends ProtocolError<ConfigErrorCode> {}

/**
 * A small JSON report a client sends besides its updates (a progress heartbeat, an evaluation), checked by
 * `schema`; refused as metadata_invalid, naming `what` and the field, or the JSON `shape` it must have.
 */
export function parseClientReport<T>(schema: v.GenericSchema<unknown, T>, body: Uint8Array, what: string, shape: string): T {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new ConfigError("metadata_invalid", `${what} is JSON: ${shape}`);
  }
  const r = v.safeParse(schema, json);
  if (!r.success) throw new ConfigError("metadata_invalid", firstIssue(r.issues, what));
  return r.output;
}

export function parseFederationConfig(json: unknown): FederationConfig {
  const r = v.safeParse(FederationConfig, json);
  if (!r.success) throw new ConfigError("config_invalid", firstIssue(r.issues, "federation config", { schema: FederationConfig }));
  // A parsed JSON body holds JSON values only; the method's own schema checks them where it runs.
  return r.output as FederationConfig;
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
