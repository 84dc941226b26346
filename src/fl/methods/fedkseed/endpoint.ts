// POST /v1/perturbed-scores (FedKSeed's extension of the inference endpoint): the summed NLL of each
// row's masked tokens under the model with the trained tensors moved to w0 + sum_k scale_k z(seed_k). A
// client whose model lives only there sends seeds and scalars, never tensors, and still runs two-point
// steps: its model and each perturbation are just more terms (zo-endpoint.ts).
import * as v from "valibot";
import { trainableTensors } from "../../../engine/llama/graph.ts";
import { elementCount } from "../../../engine/quantize.ts";
import { maskedRows, rowScores, scoredRowsFields } from "../../../engine/scored-rows.ts";
import type { EndpointExtension } from "../method.ts";
import { int } from "../shared/config-fields.ts";
import { FedKSeedConfig } from "./config.ts";
import { applyTerms } from "./seed-pool.ts";
import { zoInitial, zoSpec } from "./zo-update.ts";

const u32 = int(0, 0xffffffff);

/**
 * Rows scored under the model whose trained tensors are w0 + sum of scale * z(seed) over `terms` (w0:
 * PEFT's initialisation from `federation_seed` for LoRA, the model's own tensors for full), z from
 * fedflare's seeded generator (src/fl/directions.ts).
 */
export const PerturbedScoresRequest = v.object({
  ...scoredRowsFields,
  trains: FedKSeedConfig.entries.trains,
  direction: FedKSeedConfig.entries.direction,
  federation_seed: v.optional(u32, 0),
  terms: v.array(v.tuple([u32, v.pipe(v.number(), v.finite())])),
});
export type PerturbedScoresRequest = v.InferOutput<typeof PerturbedScoresRequest>;

export const fedkseedEndpoint: EndpointExtension<PerturbedScoresRequest> = {
  path: "/v1/perturbed-scores",
  request: PerturbedScoresRequest,
  counter: "perturbed_rows",
  // The perturbation draws one direction per term over every trained value, and builds w0 over them too.
  measure({ config, weights }, req) {
    let trained: number;
    if (req.trains.type === "full") {
      trained = 0;
      for (const n of req.trains.tensors) {
        const w = weights.get(n);
        if (!w) throw new RangeError(`trains.tensors: "${n}" is not a tensor of this model`);
        trained += elementCount(w);
      }
    } else trained = trainableTensors(config, zoSpec(req.trains)).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    return {
      rows: req.input_ids.map((r) => r.length),
      rowsField: "input_ids",
      perturbation: { values: (req.terms.length + 1) * trained, what: `(${req.terms.length} terms + w0) x ${trained} trained values` },
    };
  },
  // `trains` fits the model: measure checked it.
  answer(engine, req) {
    const { config, weights } = engine.model;
    const rows = maskedRows(req.input_ids, req.loss_mask, config.vocabSize, "the vocabulary");
    const params = applyTerms(zoInitial(config, weights, req.trains, req.federation_seed), req.terms, req.direction);
    return rowScores(engine, "fedflare.perturbed_scores", rows, {
      key: `perturbed/${JSON.stringify(req.trains)}`,
      inputs: zoSpec(req.trains),
      params,
    });
  },
  openapi: {
    schema: "PerturbedScoresRequest",
    summary:
      "fedflare extension for zeroth-order methods: " +
      "summed NLL per row under the model with its trained tensors at w0 + sum scale * z(seed)",
    description:
      "z is fedflare's seeded direction (Philox4x32-10, src/fl/directions.ts) for the seed and each tensor's name; " +
      "w0 is PEFT's LoRA initialisation from federation_seed, or the model's own tensors. " +
      "A FedKSeed client whose model lives here sends its model and each two-point perturbation as terms, never tensors.",
    answer: "{object: fedflare.perturbed_scores, model, nll: summed NLL of each row's masked tokens, tokens: their count}",
  },
};
