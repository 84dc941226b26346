// Discrete prompts' side of `fedflare run` (BDPL, Diao et al. 2023): the run serves the model as a
// completions API, since the clients hold only the tokenizer, and a version scores by its most probable
// prompt before each held-out example; the loss is the label words' NLL per token.
import { balancedAccuracy } from "../../../data/metrics.ts";
import { ForwardModel } from "../../../engine/forward.ts";
import { MethodError } from "../errors.ts";
import type { RunMethod } from "../method.ts";
import { labelWordsOf } from "../shared/config-fields.ts";
import { verbalizerRefusal } from "../shared/held-out.ts";
import { DiscreteConfig } from "./config.ts";
import { bestPrompt, discreteItems, distributionsOf, localRowScorer, promptAccuracy, promptTokens } from "./round.ts";

const NEEDS_LABELS = "the discrete-prompt method scores label words: use a classification task (spam)";

export const discreteRun: RunMethod<DiscreteConfig> = {
  type: "discrete",
  config: DiscreteConfig,
  service: () => "api",
  serviceNote: () => "serves /v1/completions: clients hold only the tokenizer",
  taskRefusal: (m, task) => (task.labels ? verbalizerRefusal(m, task) : `${NEEDS_LABELS}, not ${task.name}`),
  async score(m, version, ctx) {
    const task = ctx.task;
    if (!task) throw new MethodError("method_invalid", NEEDS_LABELS);
    const forward = await ForwardModel.create(ctx.runtime, ctx.model.config, ctx.model.weights, {
      kind: "forward",
      quant: ctx.quant,
      nll: true,
    });
    try {
      const r = await promptAccuracy(
        localRowScorer(forward),
        promptTokens(ctx.model.tokenizer, m.phrases, labelWordsOf(m), m.placement),
        bestPrompt(distributionsOf(version, m)),
        discreteItems(ctx.model.tokenizer, task.labeled, m.labels),
        ctx.maxTokens,
      );
      return {
        loss: r.labelNll,
        accuracy: r.accuracy,
        balanced: balancedAccuracy(
          r.predicted.map((k) => m.labels[k]!),
          task.labeled.map((x) => x.label),
        ),
      };
    } finally {
      await forward.release();
    }
  },
  usage: (m, final) =>
    `the slots' distributions over the phrases; the most probable prompt: "${bestPrompt(distributionsOf(final, m))
      .map((k) => m.phrases[k])
      .join(" ")}"`,
};
