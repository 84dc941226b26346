// FedBPT's aggregator side (Sun et al. 2024): a version is the global mean z [d] and squared step size;
// an upload is a client's change of both, refused when it would leave the step size not positive.
import { readTensors } from "../../flat-tensors.ts";
import { MethodError } from "../errors.ts";
import type { ServerMethod } from "../method.ts";
import { describe, tensorVersion, wholeModel } from "../shared/versions.ts";
import { labelWordsOf } from "../shared/config-fields.ts";
import { FedBptConfig } from "./config.ts";
import { BPT_MEAN, BPT_SIGMA2 } from "./search.ts";

export const fedbptServer: ServerMethod<FedBptConfig> = {
  // Forward passes scoring candidate prompts on its own weights; none at an endpoint.
  footprints: (_m, model) => ({ local: wholeModel(model, false) }),
  planRows: (model) => [{ label: "local", footprint: wholeModel(model, false) }],
  type: "fedbpt",
  config: FedBptConfig,
  strategies: { names: ["fedavg"], why: "FedBPT recombines the clients' means" },
  versionFloats: (m) => m.dimension + 1,
  // z = 0 (the prompt p0) and the initial step size; versions move by the clients' averaged changes.
  initial: (m, f) => ({
    tensors: tensorVersion([
      [BPT_MEAN, new Float32Array(m.dimension), [m.dimension]],
      [BPT_SIGMA2, Float32Array.of(m.sigma ** 2), [1]],
    ]),
    description: describe({
      method: m.type,
      base_model: f.model.name,
      prompt_tokens: m.promptTokens,
      dimension: m.dimension,
      labels: m.labels,
      label_words: labelWordsOf(m),
      seed: f.seed,
    }),
  }),
  validate(_m, update, global) {
    const before = global().tensors.get(BPT_SIGMA2)![0]!;
    const sigma2 = before + readTensors(update.layout, update.source).get(BPT_SIGMA2)![0]!;
    if (!(sigma2 > 0))
      throw new MethodError(
        "update_invalid",
        `the upload's step size is not positive: sigma2 = ${sigma2} (the global ${before} plus the change)`,
      );
  },
};
