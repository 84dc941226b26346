import type { Collusion } from "./collusion.ts";
import type { ClientTrainer } from "./trainer.ts";

/** A client deployment's bindings (workers/client/wrangler.toml): its identity, data, model and coordinator. */
export interface ClientEnv {
  /** This client's id, as listed in the federation's config. */
  CLIENT_ID: string;
  /**
   * Its signing secret (`wrangler secret put CLIENT_SECRET`), derived by the operator from the master key:
   * it signs this client's requests to the coordinator and checks the operator's requests to this client.
   * Without it every route but /health answers 503.
   */
  CLIENT_SECRET?: string;
  /** The owner's bearer token for triggering tasks by hand (`wrangler secret put CLIENT_OWNER_TOKEN`); optional. */
  CLIENT_OWNER_TOKEN?: string;
  /** The coordinator: a service binding, or reached at COORDINATOR_URL. */
  COORDINATOR?: Fetcher;
  COORDINATOR_URL?: string;
  /** The base model's Hugging Face files, under MODEL_PREFIX. */
  MODEL: R2Bucket;
  MODEL_PREFIX?: string;
  /** This client's data partition: JSONL of {"text"} or {"prompt","completion"} at DATA_KEY. */
  DATA: R2Bucket;
  DATA_KEY?: string;
  /**
   * This client's held-out split (JSONL, as the partition) at EVAL_KEY (default heldout.jsonl): the versions the
   * operator asks the clients to evaluate are scored on its first MAX_EVAL_EXAMPLES (default 256) examples;
   * without it the client reports nothing.
   */
  EVAL_KEY?: string;
  MAX_EVAL_EXAMPLES?: string;
  TRAINER: DurableObjectNamespace<ClientTrainer>;
  /** Federation ids (comma-separated) this client trains for: it pulls their open rounds on its cron and takes only their tasks. */
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
  /**
   * The highest LoRA rank this client trains (a positive integer): in a federation with method.hetero it trains
   * the lower of it and the rank the operator assigned it, and uploads at that rank; a federation without
   * method.hetero whose rank is above it fails the client's job, saying so. Absent: the assigned rank.
   */
  ADAPTER_RANK?: string;
  /** Local updates per invocation, to stay inside a Worker's CPU budget (zeroth-order steps: a quarter as many). */
  STEPS_PER_INVOCATION?: string;
  /**
   * The owner's limits (positive integers; defaults in policy.ts LIMIT_DEFAULTS). A task over one is refused
   * (POST /tasks answers 422; a pulled task's job fails), naming the limit.
   * MAX_LOCAL_STEPS: local steps of a round (FedBPT: generations), default 1000.
   * MAX_TOKENS_PER_EXAMPLE: the round's local.maxTokens, default 1024.
   * MAX_EXAMPLES_PER_ROUND: steps x local.batchSize, default 65536.
   * MAX_API_QUERIES: rows scored at an API or endpoint in a round (black-box methods), default 100000.
   * MAX_DOWNLOAD_BYTES: bytes fetched to start a round (the version, FedKSeed's seed changes), default 64 MiB;
   * enforced while reading.
   */
  MAX_LOCAL_STEPS?: string;
  MAX_TOKENS_PER_EXAMPLE?: string;
  MAX_EXAMPLES_PER_ROUND?: string;
  MAX_API_QUERIES?: string;
  MAX_DOWNLOAD_BYTES?: string;
  /**
   * A model attack (src/fl/attacks/model-poisoning.ts, JSON) this client applies to every upload it makes:
   * for benchmarks and tests of the robust rules only (`fedflare run`'s attack field sets it); never set it
   * in a deployment.
   */
  ATTACK?: string;
  /** Where "a little is enough" attackers pool their honest updates (collusion.ts); bound with such an ATTACK only. */
  COLLUSION?: DurableObjectNamespace<Collusion>;
}
