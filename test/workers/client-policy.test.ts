// What a client agrees to train, in workerd: the owner's limits read from its vars, what each method's
// round asks of them (API rows only where scoring leaves the client), and the refusals that name them.
import { describe, expect, it } from "vitest";
import type { ClientEnv } from "../../workers/client/env.ts";
import { federationRefusal, ownerLimits, roundRefusal, taskDemands } from "../../workers/client/policy.ts";
import type { RoundInfo } from "../../workers/client/sources.ts";

const env = (vars: Partial<Record<keyof ClientEnv, string>> = {}) =>
  ({ CLIENT_ID: "c1", FEDERATIONS: "f1, f2", ...vars }) as unknown as ClientEnv;
const labels = ["spam", "ham"];
// Complete method configs: a client validates its task's method by the method's own schema before counting.
const phrases = ["a", "b"];
const local = { steps: 5, batchSize: 4, lr: 0.1, maxTokens: 64 };
const taskOf = (method: Record<string, unknown>, l = local) =>
  ({ proximalMu: 0, local: l, method, model: { name: "tiny", quant: "f32" }, seed: 0 }) as unknown as RoundInfo["task"];
const round = (task: RoundInfo["task"], over: Partial<RoundInfo> = {}): RoundInfo => ({
  status: "open",
  phase: null,
  baseVersion: 0,
  sampled: ["c1"],
  task,
  ...over,
});

describe("a client's policy", () => {
  it("reads the owner's limits, with defaults, and refuses a malformed one by name", () => {
    expect(ownerLimits(env({ MAX_LOCAL_STEPS: "7" }))).toMatchObject({
      MAX_LOCAL_STEPS: 7,
      MAX_TOKENS_PER_EXAMPLE: 1024,
      MAX_DOWNLOAD_BYTES: 64 * 2 ** 20,
    });
    expect(() => ownerLimits(env({ MAX_API_QUERIES: "lots" }))).toThrow(/MAX_API_QUERIES is "lots": set a positive integer/);
    expect(() => ownerLimits(env({ MAX_API_QUERIES: "0" }))).toThrow(/MAX_API_QUERIES/);
  });

  it("counts what each method's round asks: steps, examples, and rows scored away from the client", () => {
    // Discrete prompts score at the API: population x batch x labels rows a step, capped by the method's budget.
    expect(taskDemands(env(), taskOf({ type: "discrete", population: 3, labels, phrases }))).toEqual({
      MAX_LOCAL_STEPS: 5,
      MAX_TOKENS_PER_EXAMPLE: 64,
      MAX_EXAMPLES_PER_ROUND: 20,
      MAX_API_QUERIES: 5 * 3 * 4 * 2,
    });
    expect(taskDemands(env(), taskOf({ type: "discrete", population: 3, labels, phrases, queryBudget: 50 })).MAX_API_QUERIES).toBe(50);
    // FedBPT: its generations are its steps; at an endpoint each scores lambda candidates (4 + floor(3 ln 8) = 10 for d = 8),
    // twice with perturbation.
    const bpt = { type: "fedbpt", dimension: 8, generations: 3, perturb: 0, labels };
    expect(taskDemands(env(), taskOf(bpt))).toMatchObject({ MAX_LOCAL_STEPS: 3, MAX_EXAMPLES_PER_ROUND: 12, MAX_API_QUERIES: 0 });
    expect(taskDemands(env({ TRUNK_URL: "http://endpoint" }), taskOf(bpt)).MAX_API_QUERIES).toBe(3 * 10 * 4 * 2);
    expect(taskDemands(env({ TRUNK_URL: "http://endpoint" }), taskOf({ ...bpt, perturb: 0.1, population: 6 })).MAX_API_QUERIES).toBe(
      3 * 6 * 2 * 4 * 2,
    );
    // FedKSeed at an endpoint: two points a step, each over the batch (and every label with labels).
    const ks = { type: "fedkseed", k: 16, trains: { type: "full", tensors: ["model.norm.weight"] } };
    expect(taskDemands(env({ TRUNK_URL: "http://endpoint" }), taskOf(ks)).MAX_API_QUERIES).toBe(5 * 2 * 4);
    expect(taskDemands(env({ TRUNK_URL: "http://endpoint" }), taskOf({ ...ks, labels })).MAX_API_QUERIES).toBe(5 * 2 * 4 * 2);
    expect(taskDemands(env(), taskOf(ks)).MAX_API_QUERIES).toBe(0);
    // LoRA trains locally: no API rows, whatever TRUNK_URL serves.
    expect(
      taskDemands(env({ TRUNK_URL: "http://endpoint" }), taskOf({ type: "lora", r: 4, alpha: 8, targetModules: ["q_proj"], fromLayer: 1 }))
        .MAX_API_QUERIES,
    ).toBe(0);
  });

  it("refuses an unlisted federation, a round that is not open or did not sample it, and a task over a limit, each by name", () => {
    expect(federationRefusal(env(), "f2")).toBeNull();
    expect(federationRefusal(env(), "f3")).toMatchObject({
      status: 403,
      message: expect.stringMatching(/FEDERATIONS var \("f1, f2"\).*"f3"/),
    });
    const discrete = taskOf({ type: "discrete", population: 3, labels, phrases });
    expect(roundRefusal(env(), "f1", 2, round(discrete))).toBeNull();
    expect(roundRefusal(env(), "f1", 2, round(discrete, { status: "closed" }))).toMatchObject({
      status: 409,
      message: 'round 2 of "f1" is closed at the coordinator: only an open round is trained',
    });
    expect(roundRefusal(env(), "f1", 2, round(discrete, { sampled: ["c2"] }))).toMatchObject({
      status: 409,
      message: expect.stringMatching(/not sampled/),
    });
    expect(roundRefusal(env({ MAX_API_QUERIES: "100" }), "f1", 2, round(discrete))).toMatchObject({
      status: 422,
      message: expect.stringMatching(/asks 120 .* over this client's MAX_API_QUERIES of 100/),
    });
    expect(roundRefusal(env({ MAX_TOKENS_PER_EXAMPLE: "32" }), "f1", 2, round(discrete))).toMatchObject({
      status: 422,
      message: expect.stringMatching(/asks 64 \(tokens per example\), over this client's MAX_TOKENS_PER_EXAMPLE of 32/),
    });
    expect(roundRefusal(env({ MAX_EXAMPLES_PER_ROUND: "19" }), "f1", 2, round(discrete))).toMatchObject({
      status: 422,
      message: expect.stringMatching(/MAX_EXAMPLES_PER_ROUND of 19/),
    });
  });
});
