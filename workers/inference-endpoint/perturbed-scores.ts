// POST /v1/perturbed-scores (a fedflare extension for zeroth-order methods such as FedKSeed): the
// summed NLL of each row's masked tokens under the model with the trained tensors moved to
// w0 + sum_k scale_k z(seed_k). A client whose model lives only here sends seeds and scalars, never
// tensors, and still runs two-point steps: its model and each perturbation are just more terms.
import { ForwardModel } from "../../src/engine/forward.ts";
import { exampleNlls } from "../../src/engine/train/evaluate.ts";
import { zoInitial, zoSpec } from "../../src/fl/methods/fedkseed/zo-update.ts";
import { applyTerms } from "../../src/fl/methods/fedkseed/seed-pool.ts";
import type { Engine } from "./completions.ts";
import { countedTokens, maskedRows } from "./masked-rows.ts";
import type { PerturbedScoresRequest } from "./schemas.ts";

/** `req.trains` names tensors of this model (perturbedScoresDemand checked it). */
export async function perturbedScores(
  engine: Engine,
  req: PerturbedScoresRequest,
): Promise<{ object: string; model: string; nll: number[]; tokens: number[] }> {
  const { config, weights } = engine.model;
  const rows = maskedRows(req.input_ids, req.loss_mask, config.vocabSize, "the vocabulary");
  const params = applyTerms(zoInitial(config, weights, req.trains, req.federation_seed), req.terms, req.direction);
  const nll = await engine.sessions.use(
    `perturbed/${JSON.stringify(req.trains)}`,
    () => ForwardModel.create(engine.runtime, config, weights, { kind: "forward", nll: true, inputs: zoSpec(req.trains) }),
    (model) => exampleNlls(model, rows, rows.length, undefined, params),
  );
  engine.served.perturbedRows += req.input_ids.length;
  return { object: "fedflare.perturbed_scores", model: engine.name, nll, tokens: countedTokens(rows) };
}
