// How the run sides score a version they can run as a model: the held-out completion loss and, for a
// classification task, the accuracy of the label words, as `fedflare run` records them every round.
import { balancedAccuracy, exactMatch, unitErrorRate } from "../../../data/metrics.ts";
import type { ForwardModel } from "../../../engine/forward.ts";
import { generateTokens } from "../../../engine/generate.ts";
import type { LoadedModel } from "../../../engine/model-files.ts";
import type { TextTokenizer } from "../../../engine/tokenizer/load.ts";
import type { Example } from "../../../data/jsonl.ts";
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
 * the accuracy scores `verbalizer`'s words (heldOutWords). Where the context asks for greedy answers,
 * `step` opens the same model as a generation graph (kind "step"); a method without one reports none.
 * `wordLoss`: on a classification task the loss is the verbalizer's cross-entropy, not the completion's NLL
 * (a method trained on its label words alone: LoRA with method.labels).
 */
export async function scoreModel(
  ctx: ScoreContext,
  run: {
    forward: ForwardModel;
    params?: ReadonlyMap<string, Float32Array>;
    after?: readonly number[];
    verbalizer?: Verbalizer;
    wordLoss?: boolean;
    step?: () => Promise<ForwardModel>;
  },
): Promise<Scored> {
  const { forward, params } = run;
  const after = run.after ?? [];
  try {
    const task = ctx.task;
    const completionLoss = async () =>
      (
        await heldOutLoss(
          forward,
          ctx.heldOut.map((e) => beforeCompletion(e, after)),
          8,
          undefined,
          params,
        )
      ).loss;
    if (!task) {
      const loss = await completionLoss();
      const generated =
        ctx.generation && run.step ? await greedyScores(await run.step(), ctx.model, ctx.maxTokens, ctx.generation) : undefined;
      return { loss, accuracy: null, balanced: null, ...(generated ? { generated } : {}) };
    }
    const words = run.verbalizer && heldOutWords(run.verbalizer, task.labels);
    const scored = await labelAccuracy(forward, ctx.model.tokenizer, task.labeled, task.labels, {
      maxTokens: ctx.maxTokens,
      after,
      ...(params ? { params } : {}),
      ...(words ? { words } : {}),
    });
    return {
      loss: run.wordLoss ? scored.crossEntropy : await completionLoss(),
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

/**
 * The held-out pairs as prompts to answer greedily and their gold answers, with the most tokens an answer
 * may take: twice the longest training answer's (an answer ends with EOS, which a model that has not
 * learned the task may never say; the training examples set the budget, so the held-out lengths stay unseen).
 */
export function greedyTask(
  tok: TextTokenizer,
  heldOut: readonly Example[],
  training: readonly Example[],
): NonNullable<ScoreContext["generation"]> {
  const pairs = (examples: readonly Example[]) => examples.flatMap((e) => ("prompt" in e ? [e] : []));
  const lengths = pairs(training).map((e) => tok.encode(e.completion, { addSpecialTokens: false }).length);
  return {
    answers: pairs(heldOut).map((e) => ({ prompt: e.prompt, answer: e.completion })),
    maxNew: 2 * Math.max(1, ...lengths),
  };
}

/**
 * Each prompt's greedy answer by `step` (a generation graph of `model`), up to EOS, `maxNew` tokens or
 * the end of the `maxTokens` window, scored against the gold; releases `step`.
 */
export async function greedyScores(
  step: ForwardModel,
  model: LoadedModel,
  maxTokens: number,
  { answers, maxNew }: NonNullable<ScoreContext["generation"]>,
): Promise<NonNullable<Scored["generated"]>> {
  const tok = model.tokenizer;
  try {
    const predicted: string[] = [];
    for (const a of answers) {
      const prompt = tok.encode(a.prompt);
      const out = await generateTokens(step, prompt, {
        maxTokens: Math.max(1, Math.min(maxNew, maxTokens - prompt.length)),
        seed: 0,
        temperature: 0,
        topP: 1,
        stopIds: model.config.eosTokenIds,
      });
      predicted.push(tok.decode(out.tokens, { skipSpecialTokens: true }));
    }
    const gold = answers.map((a) => a.answer);
    return { exactMatch: exactMatch(predicted, gold), errorRate: unitErrorRate(predicted, gold) };
  } finally {
    await step.release();
  }
}
