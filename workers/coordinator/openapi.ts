// The API's OpenAPI 3.1 document, with request bodies generated from the same valibot schemas that
// validate them, so the document cannot drift from what the worker accepts.
import { toJsonSchema } from "@valibot/to-json-schema";
import { AGGREGATOR_ERRORS } from "../../durable-objects/aggregator/errors.ts";
import { FederationConfig, UploadMetadata } from "../../src/protocol/federation.ts";
import { HEADERS, OPERATOR_ID } from "../../src/protocol/signature.ts";

const json = (schema: object) => ({ "application/json": { schema } });
const error = { $ref: "#/components/schemas/Error" };
const GATEWAY_ERRORS = { bad_request: 400, signature: 401, forbidden: 403 } as const;
const statusOf = (code: keyof typeof AGGREGATOR_ERRORS | keyof typeof GATEWAY_ERRORS): number => (code in GATEWAY_ERRORS ? GATEWAY_ERRORS[code as keyof typeof GATEWAY_ERRORS] : AGGREGATOR_ERRORS[code as keyof typeof AGGREGATOR_ERRORS]);
const refusals = (...codes: (keyof typeof AGGREGATOR_ERRORS | keyof typeof GATEWAY_ERRORS)[]) =>
  Object.fromEntries([...new Set(codes.map(statusOf))].map((s) => [String(s), { description: codes.filter((c) => statusOf(c) === s).join(", "), content: json(error) }]));
const pathId = { name: "id", in: "path", required: true, schema: { type: "string" } };
const pathInt = (name: string) => ({ name, in: "path", required: true, schema: { type: "integer", minimum: 0 } });

export function openapi(): object {
  return {
    openapi: "3.1.0",
    info: { title: "fedflare coordinator", version: "0.1.0", description: "Federated post-training of LLM adapters: federations, rounds, signed client updates, global adapter versions." },
    paths: {
      "/federations": {
        post: { summary: "Create a federation", requestBody: { required: true, content: json({ $ref: "#/components/schemas/FederationConfig" }) }, responses: { "201": { description: "the federation" }, ...refusals("bad_request", "config_invalid", "federation_exists") } },
      },
      "/federations/{id}": { get: { summary: "Read a federation", parameters: [pathId], responses: { "200": { description: "the federation" }, ...refusals("federation_not_found") } } },
      "/federations/{id}/metrics": { get: { summary: "Every round with its outcome and example-weighted client metrics", parameters: [pathId], responses: { "200": { description: "rounds, oldest first" }, ...refusals("federation_not_found") } } },
      "/federations/{id}/rounds": { post: { summary: "Open the next round", parameters: [pathId], responses: { "201": { description: "the round, with its sampled clients and task" }, ...refusals("federation_not_found", "round_open", "federation_finished", "initial_missing") } } },
      "/federations/{id}/rounds/{round}": { get: { summary: "Read a round", parameters: [pathId, pathInt("round")], responses: { "200": { description: "the round" }, ...refusals("bad_request", "round_not_found") } } },
      "/federations/{id}/versions/{version}": {
        get: { summary: "A global adapter version as safetensors (LoRA: PEFT key names; offsite-tuning: the adapter layers' tensors under the full model's names)", parameters: [pathId, pathInt("version")], responses: { "200": { description: "safetensors bytes", content: { "application/octet-stream": {} } }, ...refusals("version_not_found") } },
      },
      "/federations/{id}/versions/{version}/seeds": {
        get: {
          summary: "A FedKSeed federation's per-seed change since an earlier version, sparse",
          description: "Safetensors with `indices` (I32, increasing seed indices of the pool) and `values` (F32): the version's cumulative per-seed scalars minus those of version `since`. A client holding `since` applies them as w -= lr * sum_j values_j z_j.",
          parameters: [pathId, pathInt("version"), { name: "since", in: "query", required: false, schema: { type: "integer", minimum: 0, default: 0 } }],
          responses: { "200": { description: "safetensors bytes", content: { "application/octet-stream": {} } }, ...refusals("bad_request", "federation_not_found", "version_not_found") },
        },
      },
      "/federations/{id}/versions/0": {
        put: {
          summary: "Supply an offsite-tuning federation's initial adapter (operator only, once, before round 1)",
          description: `Body: safetensors of every tensor of the adapter's layers (the federation's bottom and top layers) under the full model's names and shapes, as \`npx fedflare offsite emulator\` writes it. Signed like an update (${Object.values(HEADERS).join(", ")}) as client "${OPERATOR_ID}", whose secret is derived from the master key like any client's.`,
          parameters: [pathId],
          requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
          responses: { "201": { description: "the federation" }, ...refusals("signature", "forbidden", "federation_not_found", "initial_not_needed", "initial_exists", "nonce_reused", "body_too_large", "safetensors_invalid", "tensor_mismatch", "non_finite") },
        },
      },
      "/federations/{id}/versions/{version}/adapter_config.json": { get: { summary: "What the versions hold: PEFT's adapter_config.json for LoRA; for offsite-tuning the split (bottom, top, middle, adapter_layers, emulator_layers)", parameters: [pathId, pathInt("version")], responses: { "200": { description: "JSON" } } } },
      "/federations/{id}/rounds/{round}/updates/{client}": {
        put: {
          summary: "Upload a client's delta for a round (signed; folded exactly once)",
          description: `Body: safetensors of the delta (trained minus global, PEFT key names) whose __metadata__ holds num_examples and metrics (UploadMetadata). Headers: Idempotency-Key, and the signature headers ${Object.values(HEADERS).join(", ")} (HMAC-SHA256 over method, path, timestamp, nonce and the body's SHA-256 with the client's secret).`,
          parameters: [pathId, pathInt("round"), { name: "client", in: "path", required: true, schema: { type: "string" } }, { name: "Idempotency-Key", in: "header", required: true, schema: { type: "string", maxLength: 128 } }],
          requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
          responses: {
            "200": { description: "the receipt (replayed: true for a retry of an accepted upload)" },
            ...refusals("bad_request", "signature", "client_unknown", "client_not_sampled", "round_not_found", "round_closed", "upload_conflict", "nonce_reused", "body_too_large", "safetensors_invalid", "metadata_invalid", "tensor_mismatch", "non_finite", "update_invalid"),
          },
        },
      },
    },
    components: {
      schemas: {
        FederationConfig: toJsonSchema(FederationConfig, { errorMode: "ignore" }),
        UploadMetadata: toJsonSchema(UploadMetadata, { errorMode: "ignore" }),
        Error: { type: "object", required: ["error"], properties: { error: { type: "object", required: ["code", "message"], properties: { code: { type: "string" }, message: { type: "string" } } } } },
      },
    },
  };
}
