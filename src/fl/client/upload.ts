// A client's update as a signed HTTP request: the delta as safetensors with num_examples and metrics in
// its __metadata__, an idempotency key that names the (federation, round, client) slot, and the
// signature headers.
import { signRequest } from "../../protocol/signature.ts";
import { encodeTensorFile } from "../tensor-file.ts";
import type { LocalResult } from "./local-update.ts";

export interface SignedUpload {
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

export async function signedUpload(federationId: string, round: number, clientId: string, secret: string, result: LocalResult, shapes: ReadonlyMap<string, readonly number[]>): Promise<SignedUpload> {
  const path = `/federations/${encodeURIComponent(federationId)}/rounds/${round}/updates/${encodeURIComponent(clientId)}`;
  const body = encodeTensorFile(result.delta, shapes, { format: "pt", num_examples: String(result.numExamples), metrics: JSON.stringify(result.metrics) });
  const headers = { ...(await signRequest(secret, clientId, "PUT", path, body)), "idempotency-key": `${federationId}/${round}/${clientId}`, "content-type": "application/octet-stream" };
  return { path, headers, body };
}
