// The config of a local federation run (`fedflare run --config FILE`): JSON validated with errors that
// name the field; every field has a default, so `{}` is the built-in default run.
import { firstIssue } from "../src/errors.ts";
import * as v from "valibot";
import { parseStrategyConfig } from "../src/fl/create-strategy.ts";
import { FlError } from "../src/fl/errors.ts";
import { MethodError } from "../src/fl/methods/errors.ts";
import { defaultRunMethod } from "../src/fl/methods/lora/run.ts";
import type { MethodConfig } from "../src/fl/methods/method.ts";
import { runMethods } from "../src/fl/methods/run.ts";
import { ModelAttack } from "../src/fl/attacks/model-poisoning.ts";
import { UPLOAD_DTYPES } from "../src/protocol/federation.ts";
import { PrivacyConfig } from "../src/protocol/privacy.ts";
import { RobustConfig } from "../src/protocol/robust.ts";
import { SecureAggregationConfig } from "../src/protocol/secure-aggregation.ts";
import { TASK_NAMES } from "./task-splits.ts";
import { UsageError } from "./usage.ts";

const int = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

export const RunConfig = v.strictObject({
  /** A Hugging Face model folder. */
  model: v.optional(v.string(), "models/fedflare-sotu-4m"),
  /** g2p: CMUdict grapheme-to-phoneme; spam: SpamAssassin classification; sotu: State of the Union LM. */
  task: v.optional(v.picklist(TASK_NAMES), "g2p"),
  /** Records drawn (seeded) from the task's training split (cli/task-splits.ts). */
  records: v.optional(int(20, 100_000), 2400),
  partitioner: v.optional(
    v.variant("type", [
      v.strictObject({ type: v.literal("iid") }),
      v.strictObject({ type: v.literal("dirichlet"), alpha: v.pipe(v.number(), v.gtValue(0)) }),
      v.strictObject({ type: v.literal("natural") }),
    ]),
    { type: "natural" },
  ),
  /** Local client workers (each a worker in workerd with its own partition). */
  clients: v.optional(int(1, 32), 4),
  clientsPerRound: v.optional(int(1, 32)),
  rounds: v.optional(int(1, 1000), 4),
  /**
   * A method of the run registry (src/fl/methods/run.ts), its fields validated by the method's own schema
   * in parseRunConfig. The default: LoRA above layer 1.
   */
  method: v.optional(v.looseObject({ type: v.string() }), defaultRunMethod),
  /**
   * Where a LoRA method's trunk (the layers below fromLayer) runs: at an inference endpoint the run starts
   * on the model (clients then hold only the layers from the cut), or on each client.
   */
  trunk: v.optional(v.picklist(["endpoint", "local"]), "endpoint"),
  /** A strategy as the coordinator takes it (src/fl/create-strategy.ts), checked in parseRunConfig. */
  strategy: v.optional(v.looseObject({ name: v.string() }), { name: "fedavg" }),
  /** Client-level DP for the federation (src/protocol/privacy.ts): clipping, noise, δ and an ε budget. */
  privacy: v.optional(PrivacyConfig),
  /** Secure aggregation (SecAgg+, src/protocol/secure-aggregation.ts): the aggregator sees only the sum of masked updates. */
  secureAggregation: v.optional(SecureAggregationConfig),
  /** Robust aggregation (src/protocol/robust.ts): a rule other than the mean, norm bounding, weight caps. */
  robust: v.optional(RobustConfig),
  /** Shard objects the federation's uploads spread over (docs/ARCHITECTURE.md, "Sharded aggregation"). */
  shards: v.optional(int(1, 32)),
  /** The dtype clients upload their updates in (F16 or BF16: half the bytes up; I8: a quarter). */
  uploadDtype: v.optional(v.picklist(UPLOAD_DTYPES)),
  /** Top-k sparse updates with error feedback: the fraction of each tensor's values a client sends. */
  topK: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(1))),
  /**
   * Federated evaluation as a deployment has it: each client worker also scores every version on its share of
   * the validation split and reports it (recorded as federated_loss beside the run's own validation scores).
   */
  federatedEvaluation: v.optional(v.boolean(), false),
  /** The dtype clients download versions in (F16 or BF16: half the bytes down). */
  downloadDtype: v.optional(v.picklist(["F32", "F16", "BF16"])),
  /**
   * Malicious clients, for benchmarks of the robust rules (src/fl/attacks/): the last `attackers` clients
   * poison their uploads (a model attack, through their worker's ATTACK binding) or flip their labels.
   */
  attack: v.optional(
    v.strictObject({
      attackers: int(1, 31),
      poison: v.union([
        ModelAttack,
        v.strictObject({ type: v.literal("label-flip") }),
        /** "A little is enough": z defaults to Baruch et al.'s z_max for the round's clients and attackers. */
        v.strictObject({ type: v.literal("alie"), z: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(100))) }),
      ]),
    }),
  ),
  local: v.optional(
    v.strictObject({
      steps: int(1, 100_000),
      batchSize: int(1, 1024),
      lr: v.pipe(v.number(), v.gtValue(0)),
      maxTokens: v.optional(int(2, 8192), 64),
    }),
    {
      steps: 12,
      batchSize: 8,
      lr: 3e-3,
      maxTokens: 64,
    },
  ),
  quant: v.optional(v.picklist(["f32", "int8", "int4"]), "int8"),
  /** How long a round waits for its clients, at most the coordinator's 7 days. */
  deadlineSeconds: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(7 * 24 * 3600)), 900),
  /** Validation examples scored after every round (the evaluation's cost); default: the whole validation split. */
  evalExamples: v.optional(int(1, 100_000)),
  /** Test examples the last version is scored on once, at the end; default: the whole test split. */
  testExamples: v.optional(int(1, 100_000)),
  seed: v.optional(int(0, 2 ** 32 - 1), 0),
  /**
   * A baseline on the run's own data and partition (bench/quality): "centralized" trains one client on
   * every partition pooled, with clientsPerRound times the local steps (the examples a round of the
   * federation sees); "local-only" trains partition `client` alone with the same local budget.
   */
  baseline: v.optional(
    v.variant("type", [
      v.strictObject({ type: v.literal("centralized") }),
      v.strictObject({ type: v.literal("local-only"), client: int(0, 31) }),
    ]),
  ),
});
export type RunConfig = Omit<v.InferOutput<typeof RunConfig>, "method"> & { method: MethodConfig };

export function parseRunConfig(json: unknown, source: string): RunConfig {
  const r = v.safeParse(RunConfig, json);
  if (!r.success) throw new UsageError(firstIssue(r.issues, source, { schema: RunConfig }));
  if ((r.output.clientsPerRound ?? r.output.clients) > r.output.clients)
    throw new UsageError(`${source}: field "clientsPerRound" cannot exceed "clients" (${r.output.clients})`);
  if (r.output.attack && r.output.attack.attackers >= r.output.clients)
    throw new UsageError(`${source}: field "attack.attackers" must leave an honest client among "clients" (${r.output.clients})`);
  if (r.output.attack?.poison.type === "alie" && (r.output.clientsPerRound ?? r.output.clients) < r.output.clients)
    throw new UsageError(`${source}: field "attack": colluders ("alie") wait for each other, so every client must be sampled each round`);
  if (r.output.attack && r.output.baseline)
    throw new UsageError(`${source}: field "attack": a baseline trains without attackers; drop one of "attack" and "baseline"`);
  if (r.output.baseline?.type === "local-only" && r.output.baseline.client >= r.output.clients)
    throw new UsageError(`${source}: field "baseline.client" must be a partition index below "clients" (${r.output.clients})`);
  try {
    // Checked here as the coordinator will check it, so a misspelt option fails before workerd starts; the
    // config keeps the strategy as written (its defaults are the coordinator's to fill).
    parseStrategyConfig(r.output.strategy);
    return { ...r.output, method: runMethods.parse(r.output.method).config };
  } catch (e) {
    if (e instanceof MethodError || e instanceof FlError) throw new UsageError(`${source}: ${e.message}`);
    throw e;
  }
}
