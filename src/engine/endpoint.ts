// What the inference endpoint (workers/inference-endpoint/) lends the routes a method adds to it
// (EndpointExtension, src/fl/methods/method.ts), and what it measures a request by before computing.
import type { ForwardModel } from "./forward.ts";
import type { LoadedModel } from "./model-files.ts";
import type { Runtime } from "./runtime.ts";

/** The served model, its runtime and the graphs kept between requests. */
export interface EndpointEngine {
  /** The name the endpoint serves the model as (what a request's `model` must say). */
  name: string;
  model: LoadedModel;
  runtime: Runtime;
  /**
   * The endpoint's session cache, at most maxSessions graphs, least recently used released first: runs
   * `run` on the graph kept under `key`, built by `create` when none is.
   */
  sessions: { use<T>(key: string, create: () => Promise<ForwardModel>, run: (model: ForwardModel) => Promise<T>): Promise<T> };
}

/** What a request asks for, measured from its body before anything is computed. */
export interface Demand {
  /** Each row's token count. */
  rows: readonly number[];
  /** The request field holding the rows, for messages. */
  rowsField: string;
  /** Positions every row needs beyond its tokens (a prefix soft prompt, generated tokens), and what they are. */
  extraPositions?: { count: number; what: string };
  maxTokens?: number;
  hiddenStates?: { hidden: number };
  /** Echoed log-prob entries the answer will hold. */
  echoEntries?: number;
  perturbation?: { values: number; what: string };
}
