// The rows the endpoint's scoring extensions take (POST /v1/perturbed-scores, /v1/prompt-scores; the
// client side is src/fl/client/endpoint-scores.ts): token ids and, per token, whether it counts in the
// loss; each row's summed NLL over the tokens that count comes back.
import * as v from "valibot";
import type { TokenizedExample } from "../data/examples.ts";
import type { EndpointEngine } from "./endpoint.ts";
import { ForwardModel } from "./forward.ts";
import type { InputSpec } from "./llama/graph.ts";
import { exampleNlls } from "./train/evaluate.ts";

/** A row of token ids, as the endpoint's requests carry them. */
export const tokenIds = v.pipe(v.array(v.pipe(v.number(), v.integer(), v.minValue(0))), v.minLength(1));

/** A scoring request's rows: spread into its schema beside the extension's own fields. */
export const scoredRowsFields = {
  model: v.string(),
  input_ids: v.pipe(v.array(tokenIds), v.minLength(1)),
  /** Per row and token: 1 when the token counts in the loss (it is predicted from those before it). */
  loss_mask: v.array(v.array(v.picklist([0, 1]))),
};

/** The request's rows as examples, after checking their masks and that every id is below `idLimit`. */
export function maskedRows(
  inputIds: readonly (readonly number[])[],
  lossMask: readonly (readonly (0 | 1)[])[],
  idLimit: number,
  what: string,
): TokenizedExample[] {
  if (lossMask.length !== inputIds.length)
    throw new RangeError(`loss_mask has ${lossMask.length} rows for ${inputIds.length} rows of input_ids`);
  return inputIds.map((row, r) => {
    for (const id of row) if (id >= idLimit) throw new RangeError(`token id ${id} is outside ${what} [0, ${idLimit})`);
    if (row.length < 2) throw new RangeError(`input_ids[${r}] has one token: a row needs two to score one`);
    if (lossMask[r]!.length !== row.length)
      throw new RangeError(`loss_mask[${r}] must have one entry per token of input_ids[${r}] (${row.length})`);
    return { ids: [...row], trained: [...lossMask[r]!] };
  });
}

/**
 * The answer {object, model, nll, tokens}: each row's summed NLL over its counted tokens (the first
 * predicts nothing) under the graph with `inputs`, kept in the session cache as `key`, run with `params`.
 */
export async function rowScores(
  engine: EndpointEngine,
  object: string,
  rows: readonly TokenizedExample[],
  graph: { key: string; inputs: InputSpec; params: ReadonlyMap<string, Float32Array> },
): Promise<Response> {
  const { config, weights } = engine.model;
  const nll = await engine.sessions.use(
    graph.key,
    () => ForwardModel.create(engine.runtime, config, weights, { kind: "forward", nll: true, inputs: graph.inputs }),
    (model) => exampleNlls(model, rows, rows.length, undefined, graph.params),
  );
  const tokens = rows.map((r) => r.trained.slice(1).reduce<number>((a, b) => a + b, 0));
  return Response.json({ object, model: engine.name, nll, tokens });
}
