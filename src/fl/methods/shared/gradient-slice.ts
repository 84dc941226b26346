// The slice of a gradient method's round (LoRA, offsite-tuning): local steps on the client's examples
// from the round's version, the trunk's hidden states from the endpoint when the plan has a cut; then the
// delta as the upload.
import { localResult, runLocalSteps, startLocal, type GradientPlan } from "../../client/local-update.ts";
import { decodeLocalState, encodeLocalState } from "../../client/state-file.ts";
import { sparseRound } from "../../client/sparse-feedback.ts";
import { deltaBody, sparseBody } from "../../client/upload.ts";
import { seededUniform } from "../../../engine/sampling.ts";
import type { TensorMap } from "../../tensors.ts";
import type { MethodConfig, SliceContext } from "../method.ts";

/**
 * `sent`: what the upload carries instead of the change of each tensor (FLoRA's freshly trained factors, a
 * pruned HetLoRA client's first ranks of the change), with any metrics of its own, from the trained parameters
 * by graph input name and the change by version key; absent: the change.
 */
export async function gradientSlice<C extends MethodConfig>(
  ctx: SliceContext<C>,
  plan: GradientPlan,
  sent?: (params: TensorMap, delta: TensorMap) => { tensors: TensorMap; shapes: Map<string, number[]>; metrics?: Record<string, number> },
): Promise<Uint8Array | null> {
  const { task, global, resources } = ctx;
  const [{ config, raw }, { examples }] = await Promise.all([resources.prompts(), resources.tokenized(task.local.maxTokens)]);
  let state = ctx.saved ? decodeLocalState(ctx.saved) : startLocal(global.tensors);
  if (state.step < task.local.steps) {
    const trunk =
      plan.cut === undefined ? undefined : { endpoint: await resources.endpoint(config.hiddenSize), cache: resources.trunkCache };
    // A split graph starts from the trunk's hidden states: no embedding lookup.
    const weights = () => resources.weights(plan.layers, plan.cut === undefined);
    const local = { config, weights, runtime: resources.runtime, sessions: await resources.sessions() };
    const rows = plan.examples?.(raw) ?? examples;
    state = await runLocalSteps(local, { ...task, plan }, global.tensors, rows, state, ctx.perInvocation, trunk);
    ctx.save(encodeLocalState(state), state.step);
    return null;
  }
  const result = localResult(global.tensors, state, examples.length, plan.frozen);
  const metrics = { ...result.metrics, download_bytes: task.downloadBytes };
  if (task.topK !== undefined)
    return sparseBody(sparseRound(resources.store, task.round, result.delta, task.topK), result.numExamples, metrics);
  // Stochastic rounding (I8) seeded by the client and the round, so a retried slice uploads the same bytes.
  const uniform = seededUniform(task.seed * 7919 + task.round);
  const body = sent?.(state.params, result.delta) ?? { tensors: result.delta, shapes: global.shapes };
  return deltaBody({ ...result, delta: body.tensors, metrics: { ...metrics, ...body.metrics } }, body.shapes, task.uploadDtype, uniform);
}
