// The API's OpenAPI 3.1 document, with request bodies generated from the same valibot schemas that
// validate them, so the document cannot drift from what the worker accepts.
import { EvaluationReport } from "../../src/protocol/evaluation.ts";
import { ProgressReport } from "../../src/protocol/progress.ts";
import { toJsonSchema } from "@valibot/to-json-schema";
import { AGGREGATOR_ERRORS } from "../../durable-objects/aggregator/errors.ts";
import { serverMethods } from "../../src/fl/methods/server.ts";
import { FederationConfig, UploadMetadata } from "../../src/protocol/federation.ts";
import { SECAGG_MESSAGES } from "../../src/protocol/secure-aggregation.ts";
import { HEADERS } from "../../src/protocol/signature.ts";
import { MASKED_INPUT } from "../../src/secagg/masked-update.ts";

const json = (schema: object) => ({ "application/json": { schema } });
const error = { $ref: "#/components/schemas/Error" };
const GATEWAY_ERRORS = {
  bad_request: 400,
  signature: 401,
  unauthorized: 401,
  forbidden: 403,
  payload_too_large: 413,
  /** A version asked for in a dtype it cannot be converted to (routes/versions.ts). */
  version_unconvertible: 422,
  not_configured: 503,
} as const;
const statusOf = (code: keyof typeof AGGREGATOR_ERRORS | keyof typeof GATEWAY_ERRORS): number =>
  code in GATEWAY_ERRORS ? GATEWAY_ERRORS[code as keyof typeof GATEWAY_ERRORS] : AGGREGATOR_ERRORS[code as keyof typeof AGGREGATOR_ERRORS];
const refusals = (...codes: (keyof typeof AGGREGATOR_ERRORS | keyof typeof GATEWAY_ERRORS)[]) =>
  Object.fromEntries(
    [...new Set(codes.map(statusOf))].map((s) => [
      String(s),
      { description: codes.filter((c) => statusOf(c) === s).join(", "), content: json(error) },
    ]),
  );
const pathId = { name: "id", in: "path", required: true, schema: { type: "string" } };
const pathInt = (name: string) => ({ name, in: "path", required: true, schema: { type: "integer", minimum: 0 } });
/** Who may call a route (workers/coordinator/credentials.ts). */
const OPERATOR = [{ operatorToken: [] }];
const VIEWER = [{ viewerToken: [] }, { operatorToken: [] }];
const READER = [...VIEWER, { clientSignature: [] }];
const CLIENT = [{ clientSignature: [] }];
const guarded = (security: object[], op: { responses: object } & Record<string, unknown>) => ({
  ...op,
  security,
  responses: { ...op.responses, ...refusals("unauthorized", "not_configured") },
});

/** A version's safetensors, served under its own path and under the file name PEFT loads. */
const versionBytes = {
  get: {
    security: READER,
    summary:
      "A global adapter version as safetensors (LoRA: PEFT key names; " +
      "offsite-tuning: the adapter layers' tensors under the full model's names)",
    parameters: [
      pathId,
      pathInt("version"),
      {
        name: "dtype",
        in: "query",
        required: false,
        description: "F32 (the default), or F16 / BF16: the version converted as it streams, half the bytes",
        schema: { type: "string", enum: ["F32", "F16", "BF16"] },
      },
    ],
    responses: {
      "200": { description: "safetensors bytes", content: { "application/octet-stream": {} } },
      ...refusals("bad_request", "version_not_found", "version_unconvertible"),
    },
  },
};

/** What a client's signed request about a round may meet before its body is looked at. */
const SIGNED_ROUND_REFUSALS = ["bad_request", "signature", "client_unknown", "client_not_sampled", "round_not_found"] as const;
const pathClient = { name: "client", in: "path", required: true, schema: { type: "string" } };

/** A secure round's key-phase message route (workers/coordinator/routes/secure-aggregation.ts). */
const secAggMessage = (kind: keyof typeof SECAGG_MESSAGES, what: string) => ({
  put: {
    security: CLIENT,
    summary: `A secure round: send the client's ${kind} message (signed; accepted once, the same message again gets the same answer)`,
    description: what,
    parameters: [pathId, pathInt("round"), pathClient],
    requestBody: { required: true, content: json(toJsonSchema(SECAGG_MESSAGES[kind], { errorMode: "ignore" })) },
    responses: {
      "200": { description: "the receipt: the message, whether it was replayed, and the round's phase after it" },
      ...refusals(...SIGNED_ROUND_REFUSALS, "phase_closed", "not_in_phase", "upload_conflict", "nonce_reused", "message_invalid"),
    },
  },
});

/** Each registered method's views, with their parameters. */
function viewList(): string {
  return serverMethods
    .types()
    .flatMap((t) => Object.entries(serverMethods.get(t).views ?? {}).map(([name, v]) => `${t}: "${name}" (${v.params.join(", ")})`))
    .join("; ");
}

/** The federation config, its method one of the registered methods' own schemas. */
function federationConfigSchema(): object {
  const schema = toJsonSchema(FederationConfig, { errorMode: "ignore" }) as { properties: Record<string, object> };
  schema.properties.method = {
    oneOf: serverMethods.types().map((t) => toJsonSchema(serverMethods.get(t).config, { errorMode: "ignore" })),
  };
  return schema;
}

export function openapi(): object {
  return {
    openapi: "3.1.0",
    info: {
      title: "fedflare coordinator",
      version: "0.1.0",
      description: "Federated post-training of LLM adapters: federations, rounds, signed client updates, global adapter versions.",
    },
    paths: {
      "/federations": {
        post: guarded(OPERATOR, {
          summary: "Create a federation",
          description:
            "Refused (config_invalid) when the adapter could not cross one Durable Object RPC call " +
            "(the message names the largest size that would) or the model's dimensions are out of bounds.",
          requestBody: { required: true, content: json({ $ref: "#/components/schemas/FederationConfig" }) },
          responses: {
            "201": { description: "the federation" },
            ...refusals("bad_request", "payload_too_large", "config_invalid", "federation_exists"),
          },
        }),
        get: guarded(VIEWER, { summary: "Every federation, oldest first", responses: { "200": { description: "the federations" } } }),
      },
      "/federations/{id}": {
        get: guarded(READER, {
          summary: "Read a federation",
          parameters: [pathId],
          responses: { "200": { description: "the federation" }, ...refusals("federation_not_found", "forbidden") },
        }),
        delete: guarded(OPERATOR, {
          summary: "Delete a federation and all its storage",
          parameters: [pathId],
          responses: { "200": { description: '{"deleted": id}' }, ...refusals("federation_not_found") },
        }),
      },
      "/federations/{id}/metrics": {
        get: guarded(VIEWER, {
          summary:
            "A page of the rounds with their outcome and example-weighted client metrics: at most `limit` rounds from `from`, " +
            "and past the first, at most 4 MiB of results; ask again from after the last round until the page is empty",
          parameters: [
            pathId,
            { name: "from", in: "query", schema: { type: "integer", minimum: 0, default: 0 } },
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 1000, default: 1000 } },
          ],
          responses: { "200": { description: "rounds, oldest first" }, ...refusals("federation_not_found", "bad_request") },
        }),
      },
      "/federations/{id}/plot.svg": {
        get: guarded(VIEWER, {
          summary: "The clients' train loss by round, as an SVG chart",
          parameters: [pathId],
          responses: { "200": { description: "SVG", content: { "image/svg+xml": {} } }, ...refusals("federation_not_found") },
        }),
      },
      "/federations/{id}/evaluation.svg": {
        get: guarded(VIEWER, {
          summary: "A federated-evaluation metric (query metric, default loss) by version, as an SVG chart",
          parameters: [
            pathId,
            { name: "metric", in: "query", required: false, schema: { type: "string", pattern: "^[A-Za-z0-9_.-]{1,64}$" } },
          ],
          responses: {
            "200": { description: "SVG", content: { "image/svg+xml": {} } },
            ...refusals("bad_request", "federation_not_found"),
          },
        }),
      },
      "/federations/{id}/rounds": {
        post: guarded(OPERATOR, {
          summary: "Open the next round",
          parameters: [pathId],
          responses: {
            "201": { description: "the round, with its sampled clients and task" },
            ...refusals("federation_not_found", "round_open", "federation_finished", "privacy_budget_spent", "initial_missing"),
          },
        }),
      },
      "/federations/{id}/rounds/{round}": {
        get: guarded(READER, {
          summary: "Read a round",
          parameters: [pathId, pathInt("round")],
          responses: { "200": { description: "the round" }, ...refusals("bad_request", "round_not_found", "forbidden") },
        }),
      },
      "/federations/{id}/rounds/{round}/close": {
        post: guarded(OPERATOR, {
          summary: "Close an open round now with the uploads it has (at least minClients)",
          parameters: [pathId, pathInt("round")],
          responses: { "200": { description: "the closed round" }, ...refusals("round_not_found", "round_closed", "round_short") },
        }),
      },
      "/federations/{id}/rounds/{round}/fail": {
        post: guarded(OPERATOR, {
          summary: "Fail an open round now: no new version, its uploads dropped",
          parameters: [pathId, pathInt("round")],
          requestBody: { required: false, content: json({ type: "object", properties: { reason: { type: "string", maxLength: 500 } } }) },
          responses: { "200": { description: "the failed round" }, ...refusals("bad_request", "round_not_found", "round_closed") },
        }),
      },
      "/federations/{id}/versions/{version}": versionBytes,
      "/federations/{id}/versions/{version}/adapter_model.safetensors": versionBytes,
      "/federations/{id}/versions/{version}/{view}": {
        get: {
          summary: "A method's derived read of a version (its server side's views)",
          description:
            `The views of the registered methods: ${viewList()}. FedKSeed's "seeds": safetensors with \`indices\` (I32, ` +
            `increasing seed indices of the pool) and \`values\` (F32), the version's cumulative per-seed scalars minus those of version ` +
            `\`since\`; a client holding \`since\` applies them as w -= lr * sum_j values_j z_j.`,
          parameters: [
            pathId,
            pathInt("version"),
            { name: "view", in: "path", required: true, schema: { type: "string", pattern: "^[a-z][a-z0-9-]{0,31}$" } },
            { name: "since", in: "query", required: false, schema: { type: "integer", minimum: 0, default: 0 } },
          ],
          responses: {
            "200": { description: "safetensors bytes", content: { "application/octet-stream": {} } },
            ...refusals("bad_request", "view_params_invalid", "federation_not_found", "version_not_found"),
          },
          security: READER,
        },
      },
      "/federations/{id}/versions/0": {
        put: guarded(OPERATOR, {
          summary: "Supply an offsite-tuning federation's initial adapter (operator only, once, before round 1)",
          description:
            "Body: safetensors of every tensor of the adapter's layers (the federation's bottom and top layers) " +
            "under the full model's names and shapes, as `npx fedflare offsite emulator` writes it.",
          parameters: [pathId],
          requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
          responses: {
            "201": { description: "the federation" },
            ...refusals(
              "payload_too_large",
              "federation_not_found",
              "initial_not_needed",
              "initial_exists",
              "body_too_large",
              "safetensors_invalid",
              "tensor_mismatch",
              "non_finite",
            ),
          },
        }),
      },
      "/federations/{id}/versions/{version}/adapter_config.json": {
        get: {
          security: READER,
          summary:
            "What the versions hold: PEFT's adapter_config.json for LoRA; for offsite-tuning the split (bottom, top, middle, " +
            "adapter_layers, emulator_layers)",
          parameters: [pathId, pathInt("version")],
          responses: { "200": { description: "JSON" } },
        },
      },
      "/federations/{id}/rounds/{round}/secagg/{client}": {
        get: {
          security: CLIENT,
          summary: "A secure round, as the signing client reads it: its phase and what the phase gives this client",
          description:
            "SecAgg+ (Bonawitz et al. 2017; Bell et al. 2020; docs/ARCHITECTURE.md): phase advertise → share → input → unmask → " +
            "unmasking. Always: context, threshold, length, range, bits, maxWeight, neighbours. From share: roster (the " +
            "neighbours' adverts). From input, to a client that shared: inbox (the sealed shares sent to it). In unmask, to a " +
            "client whose masked input was accepted: request (its surviving and dropped neighbours). Bytes are lowercase hex.",
          parameters: [pathId, pathInt("round"), pathClient],
          responses: {
            "200": { description: "the client's view of the round (SecAggView)" },
            ...refusals("signature", "client_unknown", "client_not_sampled", "round_not_found", "not_in_phase"),
          },
        },
      },
      "/federations/{id}/rounds/{round}/secagg/{client}/advert": secAggMessage(
        "advert",
        "Phase advertise: two X25519 public keys (share encryption, masking) and the SHA-256 of the self-mask seed.",
      ),
      "/federations/{id}/rounds/{round}/secagg/{client}/shares": secAggMessage(
        "shares",
        "Phase share: per neighbour in the roster (at least threshold), its Shamir shares of the masking key and of the " +
          "self-mask seed (33 bytes each), AES-GCM sealed under HKDF(X25519 of the encryption keys): IV, ciphertext, tag.",
      ),
      "/federations/{id}/rounds/{round}/secagg/{client}/unmask": secAggMessage(
        "unmask",
        "Phase unmask: per neighbour in the request, the seed share of a survivor or the key share of a dropped client, never both.",
      ),
      "/federations/{id}/versions/{version}/evaluate": {
        post: guarded(OPERATOR, {
          summary: "Ask the clients to evaluate a version on their own held-out splits (federated evaluation)",
          description:
            "A member's GET /federations/{id} lists the versions it is asked to evaluate (evaluate); evaluateEvery asks every k-th.",
          parameters: [pathId, pathInt("version")],
          responses: {
            "201": { description: "the request: version, requestedAt" },
            ...refusals("federation_not_found", "version_not_found", "evaluation_closed"),
          },
        }),
      },
      "/federations/{id}/versions/{version}/evaluations/{client}": {
        put: {
          security: CLIENT,
          summary: "A member's evaluation of a version: examples scored and metrics (signed; once per version, the same report replays)",
          parameters: [pathId, pathInt("version"), pathClient],
          requestBody: { required: true, content: json(toJsonSchema(EvaluationReport, { errorMode: "ignore" })) },
          responses: {
            "200": { description: "the receipt: numExamples, receivedAt, replayed" },
            ...refusals(
              "bad_request",
              "signature",
              "client_unknown",
              "evaluation_not_requested",
              "evaluation_closed",
              "metadata_invalid",
              "upload_conflict",
            ),
          },
        },
      },
      "/federations/{id}/evaluations": {
        get: guarded(VIEWER, {
          summary: "Every version the clients were asked to evaluate, oldest first, with the example-weighted mean of the reports",
          parameters: [pathId],
          responses: {
            "200": { description: "[{version, requestedAt, reports, numExamples, metrics}]" },
            ...refusals("federation_not_found"),
          },
        }),
      },
      "/federations/{id}/versions/{version}/evaluation": {
        get: guarded(VIEWER, {
          summary: "A version's federated evaluation: the example-weighted mean of the clients' reports, and each report",
          parameters: [pathId, pathInt("version")],
          responses: {
            "200": { description: "reports, numExamples, metrics, clients" },
            ...refusals("federation_not_found", "version_not_found"),
          },
        }),
      },
      "/federations/{id}/rounds/{round}/progress/{client}": {
        put: {
          security: CLIENT,
          summary: "A sampled client's heartbeat while it trains: its steps done of those planned (signed; at most one every 2 s)",
          description: "The operator and the viewer see the open round's latest heartbeat per client in its `progress` field.",
          parameters: [pathId, pathInt("round"), pathClient],
          requestBody: { required: true, content: json(toJsonSchema(ProgressReport, { errorMode: "ignore" })) },
          responses: {
            "200": { description: "the heartbeat as kept: stepsDone, steps and the time it was received" },
            ...refusals(...SIGNED_ROUND_REFUSALS, "round_closed", "metadata_invalid", "too_frequent"),
          },
        },
      },
      "/federations/{id}/rounds/{round}/updates/{client}": {
        put: {
          security: CLIENT,
          summary: "Upload a client's delta for a round (signed; folded exactly once)",
          description:
            `Body: safetensors of the delta (trained minus global, PEFT key names) ` +
            `(in a secure round's input phase, the masked input instead: one U32 tensor "${MASKED_INPUT}" of the round's length) ` +
            `whose __metadata__ holds num_examples and metrics (UploadMetadata). Headers: Idempotency-Key, and the signature headers ` +
            `${Object.values(HEADERS).join(", ")} (HMAC-SHA256 over the method, the path with its query, the signer's id, the timestamp, ` +
            `the nonce and the body's SHA-256, with the client's secret).`,
          parameters: [
            pathId,
            pathInt("round"),
            { name: "client", in: "path", required: true, schema: { type: "string" } },
            { name: "Idempotency-Key", in: "header", required: true, schema: { type: "string", maxLength: 128 } },
          ],
          requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
          responses: {
            "200": { description: "the receipt (replayed: true for a retry of an accepted upload)" },
            ...refusals(
              ...SIGNED_ROUND_REFUSALS,
              "round_closed",
              "phase_closed",
              "not_in_phase",
              "message_invalid",
              "upload_conflict",
              "nonce_reused",
              "body_too_large",
              "safetensors_invalid",
              "header_too_large",
              "metadata_invalid",
              "tensor_mismatch",
              "non_finite",
              "update_invalid",
            ),
          },
        },
      },
    },
    components: {
      schemas: {
        FederationConfig: federationConfigSchema(),
        UploadMetadata: toJsonSchema(UploadMetadata, { errorMode: "ignore" }),
        Error: {
          type: "object",
          required: ["error"],
          properties: {
            error: { type: "object", required: ["code", "message"], properties: { code: { type: "string" }, message: { type: "string" } } },
          },
        },
      },
      securitySchemes: {
        operatorToken: {
          type: "http",
          scheme: "bearer",
          description: "FEDFLARE_OPERATOR_TOKEN: create, open, close or fail rounds, supply version 0, delete; reads everything too.",
        },
        viewerToken: {
          type: "http",
          scheme: "bearer",
          description: "FEDFLARE_VIEWER_TOKEN: read-only (dashboard, list, metrics, rounds, plots, versions).",
        },
        clientSignature: {
          type: "apiKey",
          in: "header",
          name: HEADERS.signature,
          description:
            `A member client's signature: headers ${Object.values(HEADERS).join(", ")}; the signature is lowercase hex ` +
            `HMAC-SHA256, keyed by the client's secret (the operator derives it from FEDFLARE_MASTER_KEY), of the lines ` +
            `METHOD, path with its query, client id, Unix timestamp in seconds, nonce (16 random bytes, hex) and the body's ` +
            `SHA-256 in hex, joined by newlines. docs/PROTOCOL.md gives every step. Reads only its federations.`,
        },
      },
    },
  };
}
