// The method seam (docs/ARCHITECTURE.md, "Adding a method"): a federated method is one folder under
// src/fl/methods/ that gives each side of a federation what it needs, as Flower's strategies give the
// server theirs. The aggregator, the client trainer and `fedflare run` read these sides from registries
// (registry.ts) and never branch on a method's name.
import type * as v from "valibot";
import type { TokenizedExample } from "../../data/examples.ts";
import type { Example } from "../../data/jsonl.ts";
import type { LlamaConfig } from "../../engine/config.ts";
import type { Demand, EndpointEngine } from "../../engine/endpoint.ts";
import type { LoadedModel } from "../../engine/model-files.ts";
import type { Weights } from "../../engine/llama/graph.ts";
import type { Footprint } from "../../engine/client-plan.ts";
import type { QuantMode } from "../../engine/quantize.ts";
import type { KeptSessions, Runtime } from "../../engine/runtime.ts";
import type { TextTokenizer } from "../../engine/tokenizer/load.ts";
import type { FederationConfig, UploadDType } from "../../protocol/federation.ts";
import type { TrunkCache, TrunkEndpoint } from "../client/trunk-states.ts";
import type { FlatLayout, FlatSource } from "../flat-tensors.ts";
import type { UpdateSet, VectorStore } from "../robust/update-set.ts";
import type { EvaluationReport } from "../../protocol/evaluation.ts";
import type { TensorFile } from "../tensor-file.ts";
import type { TensorMap } from "../tensors.ts";

/** What every method config has: its type, the registry key. */
export interface MethodConfig {
  readonly type: string;
}

/** A method's config schema (valibot): a strict object whose `type` is the method's literal name. */
export type ConfigSchema<C extends MethodConfig> = v.GenericSchema<unknown, C>;

interface Side<C extends MethodConfig> {
  readonly type: string;
  readonly config: ConfigSchema<C>;
}

/** An upload after decoding: the update as a flat source in the global version's layout, and its metadata. */
export interface DecodedUpdate {
  layout: FlatLayout;
  source: FlatSource;
  metadata: Record<string, string>;
}

/** A derived read of the versions, served at GET /federations/{id}/versions/{v}/{name}?param=n. */
export interface VersionView<C extends MethodConfig> {
  /** Its query parameters, each a non-negative integer (0 when absent). */
  readonly params: readonly string[];
  read(m: C, versions: { tensors(version: number): TensorMap }, version: number, params: Readonly<Record<string, number>>): Uint8Array;
}

/** The aggregator's side: what a version holds, version 0, and how an upload is read and checked. */
export interface ServerMethod<C extends MethodConfig = MethodConfig> extends Side<C> {
  /** The strategies whose server step suits this method's versions (any when absent), and why. */
  readonly strategies?: { names: readonly string[]; why: string };
  /** Float32 values a version holds; throws MethodError `method_invalid` when the config does not fit the model. */
  versionFloats(m: C, model: LlamaConfig): number;
  /**
   * Version 0 as safetensors (null when the operator supplies it: see suppliedShapes), and the description
   * of the versions served as adapter_config.json.
   */
  initial(m: C, federation: FederationConfig, model: LlamaConfig): { tensors: Uint8Array | null; description: string };
  /** The shapes of a version 0 the operator supplies (offsite-tuning's owner adapter); absent: made at creation. */
  suppliedShapes?(m: C, model: LlamaConfig): Map<string, number[]>;
  /** Reads an upload into the global version's layout; absent: a safetensors file of exactly that layout. */
  decode?(m: C, body: Uint8Array, layout: FlatLayout, dataStart: number): DecodedUpdate;
  /**
   * Its clients train from the version they download and upload each tensor's change (the gradient slice): so
   * the version may be fetched in F16 or BF16 and the change sent in F16, BF16, I8 or top-k (the federation's
   * downloadDtype, uploadDtype and topK); absent: those are refused at creation.
   */
  compressible?: true;
  /**
   * A version's tensors the clients never train (FFA-LoRA's A): left out of an upload, their change is zero;
   * absent or null: every tensor is uploaded.
   */
  frozen?(m: C): ((tensor: string) => boolean) | null;
  /**
   * Clients whose uploads differ in shape from the version (LoRA's per-client ranks); absent or null: every
   * upload has the version's layout.
   */
  perClient?(m: C): PerClientUploads | null;
  /**
   * A rule that needs every update of a round (HetLoRA's per-module weights, FlexLoRA's SVD): the round keeps
   * its updates as a robust round does and the close takes this aggregate; absent or null: the weighted mean.
   */
  aggregation?(m: C): MethodAggregation | null;
  /** Refuses (MethodError `update_invalid`) an update that would leave the version invalid. */
  validate?(m: C, update: DecodedUpdate, global: () => TensorFile): void;
  /** Derived reads of its versions, by name. */
  readonly views?: Readonly<Record<string, VersionView<C>>>;
  /**
   * What a client's step runs at each placement it can take where the model runs on the client (none at
   * an endpoint or an API), for its memory plan (src/engine/client-plan.ts): `fedflare plan` and the
   * refusal at creation of a federation no client could run.
   */
  footprints(m: C, model: LlamaConfig): Partial<Record<Placement, Footprint>>;
  /** The clients `fedflare plan` compares for this method on a model: each its label, and its cut where it offloads a trunk. */
  planRows(model: LlamaConfig): PlanRow[];
}

/** Uploads whose shape is the client's own: what a client sends, and how it is read into the version's layout. */
export interface PerClientUploads {
  /** The option that makes uploads differ, for refusals ("method.hetero"). */
  readonly option: string;
  /**
   * The layout of `client`'s upload, from the version's and the shapes its header declares (`sent`, by tensor
   * name: a client may train less than it was assigned); throws FlError `tensor_mismatch` for shapes it may not send.
   */
  layout(client: string, global: FlatLayout, sent: (tensor: string) => readonly number[] | undefined): FlatLayout;
  /** `client`'s upload, read in its own layout, in the version's layout (`version`: its values, read by range). */
  lift(client: string, update: FlatSource, own: FlatLayout, global: FlatLayout, version: FlatSource): FlatSource;
}

/** A method's aggregate over a round's kept updates, and what it did (for the round's result). */
export interface MethodAggregation {
  readonly option: string;
  /** Values one close holds at once for `updates` updates in this layout (the refusal at creation bounds it). */
  peakBytes(global: FlatLayout, updates: number): number;
  /** The strategies whose server step suits the rule's result (any when absent), and why. */
  readonly strategies?: { names: readonly string[]; why: string };
  /** Work units of one close for `updates` updates (its CPU time, at the nanoseconds a unit its bench measures). */
  work(global: FlatLayout, updates: number): number;
  /** Writes the change of the version into `out`; the version itself is `global`. */
  aggregate(set: UpdateSet, layout: FlatLayout, global: FlatSource, out: VectorStore): MethodReport;
}

/** What a method's rule reports for the round's result: plain values, and lists by update in the set's order. */
export type MethodReport = Record<string, string | number | number[] | string[]>;

/** One client `fedflare plan` shows. */
export interface PlanRow {
  label: string;
  footprint: Footprint;
  /** The trunk's layers at the endpoint: the rows with one are the cuts the plan chooses among. */
  cut?: number;
}

/**
 * Where a client runs a method's forward passes: on its own weights, at an inference endpoint that holds
 * the model (TRUNK_URL), or at an OpenAI-compatible completions API (OPENAI_BASE_URL).
 */
export type Placement = "local" | "endpoint" | "api";

/** A round's task as a client's job keeps it, for any method. */
export interface ClientTask<C extends MethodConfig = MethodConfig> {
  federationId: string;
  /** The client's id (CLIENT_ID): a method whose clients differ (LoRA's per-client ranks) reads its own part. */
  clientId: string;
  round: number;
  proximalMu: number;
  local: FederationConfig["local"];
  method: C;
  quant: QuantMode;
  /** The federation's model name (what a completions API serves it as, unless the client says otherwise). */
  modelName: string;
  /** This client's own seed (dropout, batch order, sampling). */
  seed: number;
  /** The federation's seed (LoRA's initialisation, FedKSeed's seed pool, FedBPT's projection). */
  federationSeed: number;
  /** When the federation was created: with federationId, it names this federation, not one deleted before it under that id. */
  federationCreatedAt: number;
  baseVersion: number;
  /** The highest adapter rank this client's deployment trains (its ADAPTER_RANK); absent: what the federation assigns it. */
  maxRank?: number;
  /** Bytes this client downloaded to start the round. */
  downloadBytes: number;
  /** The dtype the version is fetched in (the federation's downloadDtype); absent: F32. */
  downloadDtype?: "F32" | "F16" | "BF16";
  /** The dtype a gradient method's update is uploaded in (the federation's uploadDtype); absent: F32. */
  uploadDtype?: UploadDType;
  /** The fraction of each tensor a sparse update sends, the rest fed back into the next (the federation's topK). */
  topK?: number;
}

/** What a client's deployment lends a method's work: its model, data, endpoints and storage. */
export interface ClientResources {
  runtime: Runtime;
  /** The model with these decoder layers (all when undefined) and the partition tokenized to maxTokens. */
  model(
    layers: readonly number[] | undefined,
    maxTokens: number,
  ): Promise<{ model: LoadedModel; examples: TokenizedExample[]; raw: Example[] }>;
  /**
   * The base weights of these decoder layers (all when absent), read for a session about to be built and
   * not kept: once a session holds them, the client holds no other copy.
   */
  weights(layers: readonly number[] | undefined, embedding: boolean): Promise<Weights>;
  /** The tokenizer, the model's config and the raw partition: no weights. */
  prompts(): Promise<{ tokenizer: TextTokenizer; config: LlamaConfig; raw: Example[] }>;
  /** The partition tokenized to maxTokens, without weights. */
  tokenized(maxTokens: number): Promise<{ tokenizer: TextTokenizer; examples: TokenizedExample[] }>;
  /** This client's held-out split, as records and tokenized to maxTokens (federated evaluation); null when it has none. */
  heldOut(maxTokens: number): Promise<{ raw: Example[]; examples: TokenizedExample[] } | null>;
  /** The inference endpoint at TRUNK_URL (hidden size 0 when only scores come back). */
  endpoint(hiddenSize: number): Promise<TrunkEndpoint>;
  /** The completions API at OPENAI_BASE_URL, serving `modelName` unless the deployment names another. */
  completions(modelName: string): { baseURL: string; apiKey?: string; model: string };
  /**
   * Sessions (training steps, forward graphs) kept between the slices of a job and across its federation's
   * rounds, keyed by what determines their graph: a round that builds the same graph reuses its session
   * (no weights read again); the first new graph a job builds releases those the job has not reused.
   */
  sessions(): Promise<KeptSessions>;
  /** Trunk hidden states kept across rounds. */
  trunkCache: TrunkCache;
  /** This client's storage of the federation, kept across rounds (FedKSeed's model and seed history). */
  store: { get(name: string): Uint8Array | null; put(name: string, bytes: Uint8Array): void };
  /** A signed GET of a coordinator path, its body within what is left of MAX_DOWNLOAD_BYTES; null on 404. */
  download(path: string, what: string): Promise<Uint8Array | null>;
}

/** One resumable slice of a client's round. */
export interface SliceContext<C extends MethodConfig> {
  task: ClientTask<C>;
  placement: Placement;
  /** What the round started from (start(), by default the base version). */
  global: TensorFile;
  /** The state the previous slice saved, or null at the first. */
  saved: Uint8Array | null;
  /** Local steps one invocation may take (STEPS_PER_INVOCATION). */
  perInvocation: number;
  /** Saves the state the next slice resumes from, with the steps done so far. */
  save(state: Uint8Array, step: number): void;
  resources: ClientResources;
}

/** The client's side: where it runs, what it loads, what a round asks, and the round's work in slices. */
export interface ClientMethod<C extends MethodConfig = MethodConfig> extends Side<C> {
  placement(m: C, offers: { endpoint: boolean; api: boolean }): Placement;
  /** What a round asks of a client, in the units of its owner's limits: local steps, and rows scored away from it. */
  demands(m: C, local: FederationConfig["local"], placement: Placement): { steps: number; remoteRows: number };
  /** What the round starts from, with the bytes it downloaded; absent, or null for this round: the base version. */
  start?(
    task: ClientTask<C>,
    placement: Placement,
    resources: ClientResources,
  ): Promise<{ start: Uint8Array; downloadBytes: number } | null>;
  /** One slice of the round: null while work remains, else the upload (safetensors). */
  slice(ctx: SliceContext<C>): Promise<Uint8Array | null>;
  /**
   * Federated evaluation (issue 22): a version scored on this client's held-out split, as the report it sends
   * (never an example); null when it has no held-out split or cannot score here. Absent: the method's clients
   * do not evaluate.
   */
  evaluate?(m: C, ctx: EvaluationContext, version: TensorFile, resources: ClientResources): Promise<EvaluationReport | null>;
}

/** What a client scores a version with: the federation's quantization and example length. */
export interface EvaluationContext {
  quant: QuantMode;
  maxTokens: number;
  placement: Placement;
}

/** A version's held-out scores: the loss, and for classification tasks the accuracy and balanced accuracy. */
export interface Scored {
  loss: number;
  accuracy: number | null;
  balanced: number | null;
  /**
   * An exact-match task's greedy answers (ScoreContext.answers): the share equal to the gold answer, and the
   * edit distance between their units over the gold's (g2p's phoneme error rate); absent where not asked.
   */
  generated?: { exactMatch: number; errorRate: number };
}

/** What `fedflare run` lends a method to score a version. */
export interface ScoreContext {
  runtime: Runtime;
  model: LoadedModel;
  quant: QuantMode;
  seed: number;
  local: FederationConfig["local"];
  maxTokens: number;
  /** The held-out examples, tokenized. */
  heldOut: readonly TokenizedExample[];
  /** A classification task's labels and its held-out prompts with their labels; null otherwise. */
  task: { labels: readonly string[]; labeled: readonly { prompt: string; label: string }[] } | null;
  /**
   * An exact-match task's prompts and gold answers, to be answered by greedy generation of at most
   * `maxNew` tokens (answerBudget); asked of the test split only, since generation costs a model run per
   * token; null otherwise.
   */
  generation: { answers: readonly { prompt: string; answer: string }[]; maxNew: number } | null;
}

/** What a run must start for a method: nothing, the inference endpoint (trunk or model), or its completions API. */
export type RunService = "none" | "endpoint" | "api";

/** `fedflare run`'s side: what it starts, what the clients get, how a version scores, and how to use the result. */
export interface RunMethod<C extends MethodConfig = MethodConfig> extends Side<C> {
  service(m: C, run: { trunk: "endpoint" | "local" }): RunService;
  /** A line saying what the service does for this method's clients. */
  serviceNote?(m: C): string;
  /** Refuses a task the method cannot learn (a message the user acts on), or null. */
  taskRefusal?(m: C, task: { name: string; labels: readonly string[] | null }): string | null;
  /**
   * What the clients get instead of the model's files, a version 0 the operator supplies, and a line saying
   * so (offsite-tuning's emulator and owner adapter); absent: the model's files, version 0 made at creation.
   * `source` is the model's name and its tokenizer files, read by the run: src/ reads no disk.
   */
  prepare?(
    m: C,
    model: LoadedModel,
    source: { name: string; tokenizer: { json: unknown; config?: Record<string, unknown> } },
  ): { modelFiles: Map<string, string | Uint8Array>; initial: Uint8Array; note: string };
  score(m: C, version: TensorMap, ctx: ScoreContext): Promise<Scored>;
  /** How to use the final version (a line the run prints). */
  usage(m: C, final: TensorMap, paths: { adapterDir: string; modelDir: string }): string;
}

/**
 * A method's side at the inference endpoint (workers/inference-endpoint/): a POST route it adds there, as
 * FedKSeed's perturbed scores and FedBPT's prompt scores, for clients whose model lives only at the
 * endpoint. Its requests pass the endpoint's own stage (token, body limit, schema, model, limits, queue,
 * timeout); the endpoint reads these from a registry (endpoint.ts) and never branches on a method's name.
 */
export interface EndpointExtension<R extends { model: string } = { model: string }> {
  /** The route, under /v1/ (where the endpoint's token and body limit apply). */
  readonly path: string;
  /** The request body (valibot); a `model` other than the served one is answered 404. */
  readonly request: v.GenericSchema<unknown, R>;
  /** What a request asks, from its body alone, held to the endpoint's limits before any work; a RangeError is answered 400. */
  measure(model: LoadedModel, request: R): Demand;
  /**
   * The answer to a request within the limits; a RangeError (or ModelError input_invalid) is answered 400.
   * `signal` aborts when the endpoint's timeout passes (the request is answered 504 by then).
   */
  answer(engine: EndpointEngine, request: R, signal: AbortSignal): Promise<Response>;
  /** The key under which GET /health counts the rows this route has answered (not one of /health's own keys). */
  readonly counter: string;
  /** Its OpenAPI entry: the request schema's component name, the route's summary and description, and the 200 answer's. */
  readonly openapi: { schema: string; summary: string; description: string; answer: string };
}
