// FedKSeed losses evaluated at an inference endpoint (POST /v1/perturbed-scores): the point is named by
// seed terms, so neither tensors nor gradients cross the wire, only token ids, seeds and scalars. A
// client whose model lives only at the endpoint runs the same steps (zoSteps) with this evaluator.
import type { TokenizedExample } from "../../../data/examples.ts";
import type { FedKSeedConfig } from "./config.ts";
import { moveTerms, type SeedTerms } from "./seed-pool.ts";
import { rowNllsAt, type ScoringEndpoint } from "../../client/endpoint-scores.ts";
import type { ZoEvaluator } from "./zo-update.ts";

/** Rows' summed NLL over their trained tokens at w0 + terms, as the endpoint computes them. */
export function endpointZoEvaluator(
  ep: ScoringEndpoint,
  method: Pick<FedKSeedConfig, "trains" | "direction">,
  federationSeed: number,
): ZoEvaluator<SeedTerms> {
  return {
    move: moveTerms,
    rowNlls: (rows: readonly TokenizedExample[], terms: SeedTerms) =>
      rowNllsAt(ep, "/v1/perturbed-scores", rows, {
        trains: method.trains,
        direction: method.direction,
        federation_seed: federationSeed,
        terms,
      }),
  };
}
