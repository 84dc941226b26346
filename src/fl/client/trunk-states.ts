// A split client's frozen trunk, offloaded: hidden states after the cut layer from an inference
// endpoint (POST /v1/hidden-states), cached per example. The trunk is frozen, so a state depends only
// on the model, the tokenizer, the cut and the token ids: the cache key holds all four (the model and
// tokenizer through the endpoint's fingerprint), so a changed model or tokenizer misses the cache.
// Privacy: the endpoint sees the client's token ids; only gradients stay local.
import { bearer } from "../../protocol/bearer.ts";
import { toFloat32 } from "../../protocol/dtypes.ts";
import { sha256Hex } from "../../protocol/hex.ts";
import { readSafetensors } from "../../protocol/safetensors.ts";
import { MAX_HIDDEN_STATE_BYTES, MAX_SCORED_ROWS } from "./endpoint-scores.ts";
import { request } from "./transient.ts";

export interface TrunkEndpoint {
  url: string;
  token?: string;
  model: string;
  /** The endpoint's model-and-tokenizer fingerprint (GET /health). */
  fingerprint: string;
  hiddenSize: number;
}

export interface TrunkCache {
  get(key: string): Promise<Float32Array | null>;
  put(key: string, states: Float32Array): Promise<void>;
}

const headers = (ep: Pick<TrunkEndpoint, "token">) => ({
  "content-type": "application/json",
  ...bearer(ep.token),
});

/** Reads the endpoint's model name and fingerprint (shown to callers with its token). */
export async function connectTrunk(url: string, hiddenSize: number, token?: string): Promise<TrunkEndpoint> {
  const res = await request(`trunk endpoint ${url}: /health`, `${url}/health`, {
    headers: bearer(token),
  });
  const h = (await res.json()) as { model?: string; fingerprint?: string };
  if (!h.model || !h.fingerprint)
    throw new Error(
      `trunk endpoint ${url}: /health names no model${
        token ? "" : ": it shows its model only to callers with its token (TRUNK_TOKEN for a client worker)"
      }`,
    );
  return { url, model: h.model, fingerprint: h.fingerprint, hiddenSize, ...(token ? { token } : {}) };
}

function cacheKey(ep: TrunkEndpoint, cut: number, ids: readonly number[]): Promise<string> {
  return sha256Hex(`${ep.fingerprint}|${cut}|${ids.join(",")}`);
}

/**
 * The rows' indices in requests the endpoint's caps admit: at most MAX_SCORED_ROWS rows, and an answer
 * (rows x the longest row x hidden x 4 bytes, as the endpoint pads) of at most MAX_HIDDEN_STATE_BYTES.
 */
export function hiddenStateRequests(lengths: readonly number[], indices: readonly number[], hidden: number): number[][] {
  const requests: number[][] = [];
  let current: number[] = [];
  let longest = 0;
  for (const i of indices) {
    const T = Math.max(longest, lengths[i]!);
    if (current.length > 0 && (current.length === MAX_SCORED_ROWS || (current.length + 1) * T * hidden * 4 > MAX_HIDDEN_STATE_BYTES)) {
      requests.push(current);
      current = [];
    }
    current.push(i);
    longest = current.length === 1 ? lengths[i]! : T;
  }
  if (current.length) requests.push(current);
  return requests;
}

/** Each row's hidden states after `cut` layers ([length, hidden]), from the cache or the endpoint. */
export async function trunkStates(
  ep: TrunkEndpoint,
  cache: TrunkCache,
  cut: number,
  rows: readonly (readonly number[])[],
): Promise<Float32Array[]> {
  const keys = await Promise.all(rows.map((r) => cacheKey(ep, cut, r)));
  const out = await Promise.all(keys.map((k) => cache.get(k)));
  const absent = out.flatMap((s, i) => (s ? [] : [i]));
  for (const missing of hiddenStateRequests(
    rows.map((r) => r.length),
    absent,
    ep.hiddenSize,
  )) {
    const res = await request("trunk endpoint: /v1/hidden-states", `${ep.url}/v1/hidden-states`, {
      method: "POST",
      headers: headers(ep),
      body: JSON.stringify({ model: ep.model, input_ids: missing.map((i) => rows[i]), layer: cut }),
    });
    const file = readSafetensors(new Uint8Array(await res.arrayBuffer()));
    if (file.metadata.fingerprint !== ep.fingerprint)
      throw new Error(`the endpoint's model changed (fingerprint ${file.metadata.fingerprint}, expected ${ep.fingerprint}): reconnect`);
    const t = file.tensors.get("hidden_states")!;
    const all = toFloat32(t.dtype as "F32", t.data);
    const T = t.shape[1]!;
    const H = ep.hiddenSize;
    for (const [j, i] of missing.entries()) {
      const states = all.slice(j * T * H, (j * T + rows[i]!.length) * H);
      out[i] = states;
      await cache.put(keys[i]!, states);
    }
  }
  return out as Float32Array[];
}

/** Rows' states right-padded with zeros into one [B, T, hidden] tensor. */
export function padStates(states: readonly Float32Array[], T: number, hidden: number): Float32Array {
  const out = new Float32Array(states.length * T * hidden);
  states.forEach((s, b) => out.set(s.subarray(0, T * hidden), b * T * hidden));
  return out;
}
