import type { ClientTrainer } from "./trainer.ts";

/** A client deployment's bindings (workers/client/wrangler.toml): its identity, data, model and coordinator. */
export interface ClientEnv {
  /** This client's id, as listed in the federation's config. */
  CLIENT_ID: string;
  /** Its signing secret (`wrangler secret put CLIENT_SECRET`), derived by the operator from the master key. */
  CLIENT_SECRET: string;
  /** The coordinator: a service binding, or reached at COORDINATOR_URL. */
  COORDINATOR?: Fetcher;
  COORDINATOR_URL?: string;
  /** The base model's Hugging Face files, under MODEL_PREFIX. */
  MODEL: R2Bucket;
  MODEL_PREFIX?: string;
  /** This client's data partition: JSONL of {"text"} or {"prompt","completion"} at DATA_KEY. */
  DATA: R2Bucket;
  DATA_KEY?: string;
  TRAINER: DurableObjectNamespace<ClientTrainer>;
  /** Federation ids (comma-separated) this client pulls open rounds of on its cron. */
  FEDERATIONS?: string;
  /**
   * An inference endpoint serving the base model's frozen trunk: with it, and a method whose fromLayer
   * is above 0, the client runs only the layers from the cut; FedKSeed and FedBPT clients hold no weights
   * and score at the endpoint (/v1/perturbed-scores, /v1/prompt-scores). The endpoint sees this client's tokens.
   */
  TRUNK_URL?: string;
  TRUNK_TOKEN?: string;
  /**
   * An OpenAI-compatible completions API serving the base model (base URL ending in /v1; vLLM or fedflare's
   * endpoint), for discrete-prompt federations; OPENAI_MODEL names the served model (default: the
   * federation's model.name). The API sees this client's examples.
   */
  OPENAI_BASE_URL?: string;
  OPENAI_API_KEY?: string;
  OPENAI_MODEL?: string;
  /** Local updates per invocation, to stay inside a Worker's CPU budget (zeroth-order steps: a quarter as many). */
  STEPS_PER_INVOCATION?: string;
}
