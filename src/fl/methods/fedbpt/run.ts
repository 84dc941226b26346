// FedBPT's side of `fedflare run` (Sun et al., ICML 2024): a version is the search's mean z, so it scores
// as the base model with the soft prompt p0 + A z as an input.
import { ForwardModel } from "../../../engine/forward.ts";
import { SOFT_PROMPT } from "../../../engine/llama/graph.ts";
import type { RunMethod } from "../method.ts";
import { scoreModel, verbalizerRefusal } from "../shared/held-out.ts";
import { FedBptConfig } from "./config.ts";
import { bbtGlobalOf, softPromptLayout, softPromptOf } from "./search.ts";

export const fedbptRun: RunMethod<FedBptConfig> = {
  type: "fedbpt",
  config: FedBptConfig,
  service: () => "none",
  taskRefusal: verbalizerRefusal,
  async score(m, version, ctx) {
    const c = ctx.model.config;
    const space = { promptTokens: m.promptTokens, dimension: m.dimension, seed: ctx.seed };
    const prompt = softPromptOf(c, ctx.model.weights, space)(bbtGlobalOf(version).mean);
    const { inputs, after } = softPromptLayout(c, m.promptTokens, m.placement);
    const forward = await ForwardModel.create(ctx.runtime, c, ctx.model.weights, { kind: "forward", quant: ctx.quant, nll: true, inputs });
    return scoreModel(ctx, { forward, params: new Map([[SOFT_PROMPT, prompt]]), after, verbalizer: m });
  },
  usage: () => "the mean z and squared step size; the soft prompt is p0 + A z (src/fl/methods/fedbpt/search.ts)",
};
