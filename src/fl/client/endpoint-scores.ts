// fedflare's scoring extensions of the inference endpoint (/v1/perturbed-scores, /v1/prompt-scores):
// rows go as token ids with a loss mask, each row's summed NLL over its masked tokens comes back.
import type { TokenizedExample } from "../../data/examples.ts";

export interface ScoringEndpoint {
  url: string;
  model: string;
  token?: string;
}

/** Each row's summed NLL over its trained tokens, scored at `path` with the extension's own fields. */
export async function rowNllsAt(ep: ScoringEndpoint, path: string, rows: readonly TokenizedExample[], fields: Record<string, unknown>): Promise<number[]> {
  const res = await fetch(`${ep.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(ep.token ? { authorization: `Bearer ${ep.token}` } : {}) },
    body: JSON.stringify({ model: ep.model, input_ids: rows.map((r) => r.ids), loss_mask: rows.map((r) => r.trained), ...fields }),
  });
  if (!res.ok) throw new Error(`${path} at ${ep.url}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { nll: number[] }).nll;
}
