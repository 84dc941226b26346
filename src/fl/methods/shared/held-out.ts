// How the run sides score a version they can run as a model: the held-out completion loss and, for a
// classification task, the accuracy of the label words, as `fedflare run` records them every round.
import { balancedAccuracy } from "../../../data/metrics.ts";
import type { ForwardModel } from "../../../engine/forward.ts";
import { beforeCompletion, heldOutLoss, labelAccuracy } from "../../../engine/train/evaluate.ts";
import { MethodError } from "../errors.ts";
import type { ScoreContext, Scored } from "../method.ts";

/** A method's verbalizer, where it has one (config-fields.ts labels and labelWords). */
export interface Verbalizer {
  labels?: readonly string[] | undefined;
  labelWords?: readonly string[] | undefined;
}

/**
 * The words the held-out accuracy scores for each of the task's labels, in the task's order: the method's
 * label words where it has them (it learned to move those), else undefined (the labels themselves).
 */
export function heldOutWords(m: Verbalizer, taskLabels: readonly string[]): readonly string[] | undefined {
  const words = m.labelWords;
  if (!words) return undefined;
  return taskLabels.map((l) => {
    const i = m.labels?.indexOf(l) ?? -1;
    if (i < 0) throw new MethodError("method_invalid", `method.labels ${JSON.stringify(m.labels)} lack the task's label "${l}"`);
    return words[i]!;
  });
}

/** Why a verbalizer cannot score the task's labels (heldOutWords' refusal), or null. */
export function verbalizerRefusal(m: Verbalizer, task: { labels: readonly string[] | null }): string | null {
  if (!task.labels) return null;
  try {
    heldOutWords(m, task.labels);
    return null;
  } catch (e) {
    if (e instanceof MethodError) return e.message;
    throw e;
  }
}

/**
 * Scores a model built with nll on the held-out examples, then releases it. `params` feeds its inputs (a
 * soft prompt), `after` are ids between each prompt and its completion (an inline soft prompt's), and
 * the accuracy scores `verbalizer`'s words (heldOutWords).
 */
export async function scoreModel(
  ctx: ScoreContext,
  run: { forward: ForwardModel; params?: ReadonlyMap<string, Float32Array>; after?: readonly number[]; verbalizer?: Verbalizer },
): Promise<Scored> {
  const { forward, params } = run;
  const after = run.after ?? [];
  try {
    const { loss } = await heldOutLoss(
      forward,
      ctx.heldOut.map((e) => beforeCompletion(e, after)),
      8,
      undefined,
      params,
    );
    const task = ctx.task;
    if (!task) return { loss, accuracy: null, balanced: null };
    const words = run.verbalizer && heldOutWords(run.verbalizer, task.labels);
    const scored = await labelAccuracy(forward, ctx.model.tokenizer, task.labeled, task.labels, {
      maxTokens: ctx.maxTokens,
      after,
      ...(params ? { params } : {}),
      ...(words ? { words } : {}),
    });
    return {
      loss,
      accuracy: scored.accuracy,
      balanced: balancedAccuracy(
        scored.predicted,
        task.labeled.map((x) => x.label),
      ),
    };
  } finally {
    await forward.release();
  }
}
