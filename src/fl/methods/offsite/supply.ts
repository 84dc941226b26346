// The operator's request that gives an offsite-tuning federation its version 0: the owner's adapter
// tensors, sent with the operator's bearer token.
import { bearer } from "../../../protocol/bearer.ts";

export async function initialAdapterRequest(
  federationId: string,
  operatorToken: string,
  body: Uint8Array,
): Promise<{ path: string; method: "PUT"; headers: Record<string, string>; body: Uint8Array<ArrayBuffer> }> {
  const path = `/federations/${encodeURIComponent(federationId)}/versions/0`;
  return {
    path,
    method: "PUT",
    headers: { ...bearer(operatorToken), "content-type": "application/octet-stream" },
    body: Uint8Array.from(body),
  };
}
