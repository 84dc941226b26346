// FedKSeed's side of `fedflare run` (Qin et al. 2024): a version is the cumulative scalar per seed, so it
// scores as the model rebuilt from them, w0 - lr * sum_j c_j z_j, on the tensors the method trains.
import { ForwardModel } from "../../../engine/forward.ts";
import { loraPairs, loraScaling } from "../../../engine/lora/peft.ts";
import type { RunMethod } from "../method.ts";
import { scoreModel, verbalizerRefusal } from "../shared/held-out.ts";
import { FedKSeedConfig } from "./config.ts";
import { SEED_SUMS } from "./seed-sums.ts";
import { zoGlobal, zoInitial } from "./zo-update.ts";

export const fedkseedRun: RunMethod<FedKSeedConfig> = {
  type: "fedkseed",
  config: FedKSeedConfig,
  service: () => "none",
  taskRefusal: verbalizerRefusal,
  async score(m, version, ctx) {
    const c = ctx.model.config;
    const sums = version.get(SEED_SUMS);
    if (!sums) throw new RangeError(`a FedKSeed version holds "${SEED_SUMS}"`);
    const cumulative = new Map([...sums.entries()].filter(([, x]) => x !== 0));
    const params = zoGlobal(
      zoInitial(c, ctx.model.weights, m.trains, ctx.seed),
      { method: m, federationSeed: ctx.seed, local: ctx.local },
      cumulative,
    );
    const t = m.trains;
    const opts = { kind: "forward", quant: ctx.quant, nll: true } as const;
    const forward =
      t.type === "full"
        ? await ForwardModel.create(ctx.runtime, c, new Map([...ctx.model.weights, ...params]), opts)
        : await ForwardModel.create(ctx.runtime, c, ctx.model.weights, {
            ...opts,
            lora: loraPairs(params, t.r, loraScaling({ r: t.r, alpha: t.alpha, useRslora: t.rslora })),
          });
    return scoreModel(ctx, { forward, verbalizer: m });
  },
  usage: () => "the cumulative scalar per seed; the model is w0 - lr * sum_j c_j z_j (src/fl/methods/fedkseed/zo-update.ts zoGlobal)",
};
