// Offsite-tuning's client side: the client's model files are the emulator (what the operator gave it);
// gradient steps train the adapter's layers on it.
import type { ClientMethod } from "../method.ts";
import { gradientSlice } from "../shared/gradient-slice.ts";
import { labelWordTraining } from "../shared/label-word-training.ts";
import { OffsiteConfig } from "./config.ts";
import { offsitePlan } from "./plan.ts";

export const offsiteClient: ClientMethod<OffsiteConfig> = {
  type: "offsite",
  config: OffsiteConfig,
  // The emulator runs whole on the client: there is no trunk to offload.
  placement: () => "local",
  demands: (_m, local) => ({ steps: local.steps, remoteRows: 0 }),
  slice: async (ctx) => {
    const { config, tokenizer } = await ctx.resources.prompts();
    const m = ctx.task.method;
    return gradientSlice(ctx, offsitePlan(m, config, labelWordTraining(m, tokenizer, ctx.task.local.maxTokens, "offsite-tuning")));
  },
};
