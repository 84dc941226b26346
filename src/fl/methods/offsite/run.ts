// Offsite-tuning's side of `fedflare run` (Xiao, Lin and Han 2023): the clients get the emulator instead
// of the model, the federation starts from the owner's adapter, and a version scores plugged back into
// the full model.
import { ForwardModel } from "../../../engine/forward.ts";
import type { RunMethod } from "../method.ts";
import { scoreModel } from "../shared/held-out.ts";
import { labelWordRefusal, labelWordTraining } from "../shared/label-word-training.ts";
import { OffsiteConfig } from "./config.ts";
import { offsiteLayout, plugIn } from "./emulator.ts";
import { emulate } from "./files.ts";

export const offsiteRun: RunMethod<OffsiteConfig> = {
  type: "offsite",
  config: OffsiteConfig,
  service: () => "none",
  taskRefusal: (m, task) => labelWordRefusal(m, task, "offsite-tuning"),
  prepare(m, model, source) {
    const { description, emulator, adapter } = emulate(model.config, model.weights, m, source.name, source.tokenizer);
    return {
      modelFiles: emulator,
      initial: adapter.get("adapter_model.safetensors") as Uint8Array,
      note:
        `offsite-tuning: adapter layers ${JSON.stringify(description.adapter_layers)}, clients run the emulator's layers ` +
        `${JSON.stringify(description.emulator_layers)}`,
    };
  },
  async score(m, version, ctx) {
    // Refused here, before round 1, as each client would: a label word of more than one token.
    labelWordTraining(m, ctx.model.tokenizer, ctx.maxTokens, "offsite-tuning");
    const c = ctx.model.config;
    const weights = plugIn(c, ctx.model.weights, version, offsiteLayout(c.numLayers, m));
    return scoreModel(ctx, {
      forward: await ForwardModel.create(ctx.runtime, c, weights, { kind: "forward", quant: ctx.quant, nll: true }),
      ...(m.labels ? { verbalizer: m, wordLoss: true } : {}),
    });
  },
  usage: (_m, _final, paths) => `npx fedflare offsite plug-in --model ${paths.modelDir} --adapter ${paths.adapterDir} --out DIR`,
};
