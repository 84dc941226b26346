// Discrete prompts' aggregator side (BDPL; FedOne): a version is the slots' distributions over the
// phrases; an upload is a client's change of them, refused unless global + change are distributions.
import { readTensors } from "../../flat-tensors.ts";
import { MethodError } from "../errors.ts";
import type { ServerMethod } from "../method.ts";
import { labelWordsOf } from "../shared/config-fields.ts";
import { describe, tensorVersion } from "../shared/versions.ts";
import { DiscreteConfig } from "./config.ts";
import { PROBS } from "./round.ts";

export const discreteServer: ServerMethod<DiscreteConfig> = {
  // Scored at a completions API: the client holds no model.
  footprints: () => ({}),
  planRows: () => [],
  type: "discrete",
  config: DiscreteConfig,
  strategies: { names: ["fedavg"], why: "discrete prompts average the clients' distributions" },
  versionFloats: (m) => m.slots * m.phrases.length,
  // Every slot uniform over the phrases; versions move by the clients' averaged changes.
  initial: (m, f) => ({
    tensors: tensorVersion([[PROBS, new Float32Array(m.slots * m.phrases.length).fill(1 / m.phrases.length), [m.slots, m.phrases.length]]]),
    description: describe({
      method: m.type,
      base_model: f.model.name,
      slots: m.slots,
      phrases: m.phrases,
      labels: m.labels,
      label_words: labelWordsOf(m),
      seed: f.seed,
    }),
  }),
  validate(m, update, global) {
    const n = m.phrases.length;
    const g = global().tensors.get(PROBS)!;
    const d = readTensors(update.layout, update.source).get(PROBS)!;
    for (let s = 0; s < m.slots; s++) {
      let sum = 0;
      for (let k = s * n; k < (s + 1) * n; k++) {
        const p = g[k]! + d[k]!;
        if (p < -1e-4)
          throw new MethodError(
            "update_invalid",
            `slot ${s} of the upload's distributions gives phrase ${k - s * n} the probability ${p}: ` +
              `the global distributions plus the change must be probabilities`,
          );
        sum += p;
      }
      if (Math.abs(sum - 1) > 1e-3)
        throw new MethodError(
          "update_invalid",
          `slot ${s} of the upload's distributions sums to ${sum}, not 1: the global distributions plus the change must be probabilities`,
        );
    }
  },
};
