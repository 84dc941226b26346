// FedKSeed losses evaluated at an inference endpoint (POST /v1/perturbed-scores): the point is named by
// seed terms, so neither tensors nor gradients cross the wire, only token ids, seeds and scalars. A
// client whose model lives only at the endpoint runs the same steps (zoSteps) with this evaluator.
import type { TokenizedExample } from "../../data/examples.ts";
import type { FedKSeedMethod } from "../../protocol/federation.ts";
import { moveTerms, type SeedTerms } from "../zo/fedkseed.ts";
import type { ZoEvaluator } from "./zo-update.ts";

export interface ZoEndpoint {
  url: string;
  model: string;
  token?: string;
}

/** Rows' summed NLL over their trained tokens at w0 + terms, as the endpoint computes them. */
export function endpointZoEvaluator(ep: ZoEndpoint, method: Pick<FedKSeedMethod, "trains" | "direction">, federationSeed: number): ZoEvaluator<SeedTerms> {
  return {
    move: moveTerms,
    async rowNlls(rows: readonly TokenizedExample[], terms: SeedTerms) {
      const res = await fetch(`${ep.url}/v1/perturbed-scores`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(ep.token ? { authorization: `Bearer ${ep.token}` } : {}) },
        body: JSON.stringify({ model: ep.model, input_ids: rows.map((r) => r.ids), loss_mask: rows.map((r) => r.trained), trains: method.trains, direction: method.direction, federation_seed: federationSeed, terms }),
      });
      if (!res.ok) throw new Error(`perturbed scores at ${ep.url}: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { nll: number[] }).nll;
    },
  };
}
