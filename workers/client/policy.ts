// What a client agrees to train: only its owner's federations (FEDERATIONS), only an open round that
// sampled it, and only within the limits its owner set in wrangler.toml. Checked when a task is pushed
// (POST /tasks answers the refusal) and again when the trainer starts the job (a pulled task fails with it).
import { HTTPException } from "hono/http-exception";
import { clientMethods } from "../../src/fl/methods/client.ts";
import type { ClientEnv } from "./env.ts";
import { placementOf, type RoundInfo } from "./sources.ts";

/** The owner's limits (wrangler.toml [vars]) and their defaults. */
export const LIMIT_DEFAULTS = {
  /** Local steps of a round (FedBPT: its CMA-ES generations). */
  MAX_LOCAL_STEPS: 1000,
  /** Tokens an example is cut to (the round's local.maxTokens). */
  MAX_TOKENS_PER_EXAMPLE: 1024,
  /** Examples a round's steps go through: steps (FedBPT: generations) x local.batchSize. */
  MAX_EXAMPLES_PER_ROUND: 65_536,
  /**
   * Rows (an example under one candidate and one label) a round scores at an API or inference endpoint, at
   * most: discrete prompts at the completions API, FedKSeed and FedBPT when their model is at TRUNK_URL.
   */
  MAX_API_QUERIES: 100_000,
  /** Bytes downloaded to start a round: the global version, or FedKSeed's per-seed changes. */
  MAX_DOWNLOAD_BYTES: 64 * 2 ** 20,
} as const;

export type LimitName = keyof typeof LIMIT_DEFAULTS;
export type OwnerLimits = Record<LimitName, number>;

export function ownerLimits(env: ClientEnv): OwnerLimits {
  const out = { ...LIMIT_DEFAULTS } as OwnerLimits;
  for (const name of Object.keys(LIMIT_DEFAULTS) as LimitName[]) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    if (!/^[1-9][0-9]{0,14}$/.test(raw.trim()))
      throw new HTTPException(503, {
        message: `this client's ${name} is "${raw.slice(0, 40)}": set a positive integer in its wrangler.toml [vars]`,
      });
    out[name] = Number(raw);
  }
  return out;
}

/** What a round's task asks of this client, in the units of the limits it can be checked against before training. */
export function taskDemands(env: ClientEnv, task: RoundInfo["task"]): Omit<OwnerLimits, "MAX_DOWNLOAD_BYTES"> {
  const { side, config } = clientMethods.parse(task.method);
  const { steps, remoteRows } = side.demands(config, task.local, placementOf(env, side, config));
  return {
    MAX_LOCAL_STEPS: steps,
    MAX_TOKENS_PER_EXAMPLE: task.local.maxTokens,
    MAX_EXAMPLES_PER_ROUND: steps * task.local.batchSize,
    MAX_API_QUERIES: remoteRows,
  };
}

export interface Refusal {
  status: 403 | 409 | 422;
  message: string;
}

export function listedFederations(env: ClientEnv): string[] {
  return (env.FEDERATIONS ?? "")
    .split(",")
    .map((f) => f.trim())
    .filter(Boolean);
}

export function federationRefusal(env: ClientEnv, federationId: string): Refusal | null {
  if (listedFederations(env).includes(federationId)) return null;
  return {
    status: 403,
    message:
      `this client trains only for the federations in its FEDERATIONS var (${JSON.stringify(env.FEDERATIONS ?? "")}): ` +
      `its owner adds "${federationId}" there to take its tasks`,
  };
}

/** Why this client will not train `round` of `federationId` as the coordinator describes it, or null. */
export function roundRefusal(env: ClientEnv, federationId: string, round: number, info: RoundInfo): Refusal | null {
  const what = `round ${round} of "${federationId}"`;
  if (info.status !== "open")
    return { status: 409, message: `${what} is ${info.status} at the coordinator: only an open round is trained` };
  if (!info.sampled.includes(env.CLIENT_ID)) return { status: 409, message: `this client (${env.CLIENT_ID}) was not sampled for ${what}` };
  const limits = ownerLimits(env);
  const demands = taskDemands(env, info.task);
  for (const [name, asked] of Object.entries(demands) as [LimitName, number][])
    if (asked > limits[name])
      return {
        status: 422,
        message:
          `${what} asks ${asked} (${LIMIT_UNITS[name]}), over this client's ${name} of ${limits[name]}: its owner raises ` +
          `${name} in its wrangler.toml [vars] to take this task`,
      };
  return null;
}

const LIMIT_UNITS: Record<LimitName, string> = {
  MAX_LOCAL_STEPS: "local steps",
  MAX_TOKENS_PER_EXAMPLE: "tokens per example",
  MAX_EXAMPLES_PER_ROUND: "examples: steps x batch size",
  MAX_API_QUERIES: "rows scored at an API or endpoint, at most",
  MAX_DOWNLOAD_BYTES: "bytes downloaded",
};
