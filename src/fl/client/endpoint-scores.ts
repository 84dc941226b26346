// fedflare's scoring extensions of the inference endpoint (/v1/perturbed-scores, /v1/prompt-scores):
// rows go as token ids with a loss mask, each row's summed NLL over its masked tokens comes back.
import type { TokenizedExample } from "../../data/examples.ts";
import { bearer } from "../../protocol/bearer.ts";
import { request } from "./transient.ts";

export interface ScoringEndpoint {
  url: string;
  model: string;
  token?: string;
}

/** The most rows a client sends the endpoint in one request; the endpoint's row cap is never below it. */
export const MAX_SCORED_ROWS = 256;

/** The most hidden-state bytes (rows x positions x hidden x 4) a split client asks for in one request, the endpoint's default cap. */
export const MAX_HIDDEN_STATE_BYTES = 16 << 20;

/**
 * Each row's summed NLL over its trained tokens, scored at `path` with the extension's own fields, in
 * requests of at most MAX_SCORED_ROWS rows.
 */
export async function rowNllsAt(
  ep: ScoringEndpoint,
  path: string,
  rows: readonly TokenizedExample[],
  fields: Record<string, unknown>,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < rows.length; i += MAX_SCORED_ROWS) {
    const chunk = rows.slice(i, i + MAX_SCORED_ROWS);
    const res = await request(`${path} at ${ep.url}`, `${ep.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(ep.token) },
      body: JSON.stringify({ model: ep.model, input_ids: chunk.map((r) => r.ids), loss_mask: chunk.map((r) => r.trained), ...fields }),
    });
    out.push(...((await res.json()) as { nll: number[] }).nll);
  }
  return out;
}
