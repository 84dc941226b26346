// Federated evaluation on the client's side (issue 22): the versions its federation asks it to evaluate,
// each downloaded within the owner's MAX_DOWNLOAD_BYTES, scored on its held-out split (EVAL_KEY) by the
// federation's method (its client side's `evaluate`), and reported, signed: a few numbers, never an example.
import { clientMethods } from "../../src/fl/methods/client.ts";
import type { EvaluationTask } from "../../src/protocol/member-views.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import type { ClientEnv } from "./env.ts";
import { federationRefusal, ownerLimits } from "./policy.ts";
import { downloads, type ModelCache } from "./resources.ts";
import { coordinatorFetch, placementOf } from "./sources.ts";

/**
 * Scores and reports the newest of `versions` (the next call takes the next: one forward pass over the held-out
 * split per invocation keeps it inside a Worker's CPU time), returning what was reported. Nothing is reported
 * when the method's clients do not evaluate, or cannot here (a split client), or the client has no held-out split.
 */
export async function evaluateVersions(
  env: ClientEnv,
  sql: SqlStorage,
  cache: ModelCache,
  federationId: string,
  versions: readonly number[],
  task: EvaluationTask,
): Promise<number[]> {
  const refusal = federationRefusal(env, federationId);
  if (refusal) throw new Error(refusal.message);
  const { side, config } = clientMethods.parse(task.method);
  if (!side.evaluate) return [];
  const v = versions[0];
  if (v === undefined) return [];
  const limits = ownerLimits(env);
  const budget = downloads(env, limits.MAX_DOWNLOAD_BYTES, 0);
  const bytes = await budget.get(`/federations/${encodeURIComponent(federationId)}/versions/${v}`, `version ${v}`);
  if (!bytes) return [];
  const resources = cache.resources(env, sql, { federationId, createdAt: task.createdAt, key: `evaluate/${v}` }, budget.get);
  const ctx = {
    quant: task.quant,
    maxTokens: Math.min(task.maxTokens, limits.MAX_TOKENS_PER_EXAMPLE),
    placement: placementOf(env, side, config),
  };
  const report = await side.evaluate(config, ctx, decodeTensorFile(bytes, `version ${v}`), resources);
  if (!report) return [];
  const path = `/federations/${encodeURIComponent(federationId)}/versions/${v}/evaluations/${encodeURIComponent(env.CLIENT_ID)}`;
  const res = await coordinatorFetch(env, path, {
    method: "PUT",
    body: new TextEncoder().encode(JSON.stringify(report)),
    headers: { "content-type": "application/json" },
  });
  // 409: reported before (a report is accepted once) or no longer asked.
  if (!res.ok && res.status !== 409) throw new Error(`reporting version ${v}'s evaluation: ${res.status} ${await res.text()}`);
  return [v];
}
