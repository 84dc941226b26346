// LoRA's client side: gradient steps on the adapter; with an endpoint and fromLayer above 0 the frozen
// trunk below the cut runs there and the client holds only the layers above it (split learning).
import type { ClientMethod } from "../method.ts";
import { gradientSlice } from "../shared/gradient-slice.ts";
import { LoraConfig } from "./config.ts";
import { loraPlan } from "./plan.ts";

export const loraClient: ClientMethod<LoraConfig> = {
  type: "lora",
  config: LoraConfig,
  placement: (m, offers) => (offers.endpoint && m.fromLayer > 0 ? "endpoint" : "local"),
  demands: (_m, local) => ({ steps: local.steps, remoteRows: 0 }),
  slice: async (ctx) => {
    const { config } = await ctx.resources.prompts();
    const plan = loraPlan(ctx.task.method, config, { offloaded: ctx.placement === "endpoint", seed: ctx.task.seed + ctx.task.round });
    return gradientSlice(ctx, plan);
  },
};
