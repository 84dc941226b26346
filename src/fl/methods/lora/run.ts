// LoRA's side of `fedflare run`: split LoRA (fromLayer > 0) gets the inference endpoint for the frozen
// trunk below its cut, and a version scores as the base model with the version's adapter (greedy answers
// through a generation graph with the same adapter).
import { ForwardModel } from "../../../engine/forward.ts";
import { LINEAR_MODULES } from "../../../engine/llama/names.ts";
import type { RunMethod } from "../method.ts";
import { scoreModel } from "../shared/held-out.ts";
import { labelWordRefusal, labelWordTraining } from "../shared/label-word-training.ts";
import { versionPairs } from "./adapter.ts";
import { LoraConfig } from "./config.ts";

/** The run config's method when it names none: LoRA r 8 on every linear module above layer 1, the trunk at the endpoint. */
export const defaultRunMethod: LoraConfig = {
  type: "lora",
  r: 8,
  alpha: 16,
  targetModules: [...LINEAR_MODULES],
  dropout: 0,
  rslora: false,
  fromLayer: 1,
};

export const loraRun: RunMethod<LoraConfig> = {
  type: "lora",
  config: LoraConfig,
  service: (m, run) => (m.fromLayer > 0 && run.trunk === "endpoint" ? "endpoint" : "none"),
  serviceNote: (m) => `serves the trunk: clients hold only layers ${m.fromLayer}+`,
  taskRefusal: (m, task) => labelWordRefusal(m, task, "LoRA"),
  async score(m, version, ctx) {
    // Refused here, before round 1, as each client would: a label word of more than one token.
    labelWordTraining(m, ctx.model.tokenizer, ctx.maxTokens, "LoRA");
    const lora = versionPairs(m, version);
    const forward = await ForwardModel.create(ctx.runtime, ctx.model.config, ctx.model.weights, {
      kind: "forward",
      quant: ctx.quant,
      nll: true,
      lora,
    });
    const step = () => ForwardModel.create(ctx.runtime, ctx.model.config, ctx.model.weights, { kind: "step", quant: ctx.quant, lora });
    return scoreModel(ctx, { forward, step, ...(m.labels ? { verbalizer: m, wordLoss: true } : {}) });
  },
  usage: (_m, _final, paths) => `npx fedflare score --model ${paths.modelDir} --adapter ${paths.adapterDir} --text "..."`,
};
