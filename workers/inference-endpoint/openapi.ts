// The endpoint's OpenAPI 3.1 document, its request bodies generated from the schemas that validate them,
// the methods' extensions (EndpointExtension, src/fl/methods/method.ts) each with the entry it brings.
import { toJsonSchema } from "@valibot/to-json-schema";
import type { EndpointExtension } from "../../src/fl/methods/method.ts";
import { CompletionRequest, HiddenStatesRequest } from "./schemas.ts";

const error = { $ref: "#/components/schemas/Error" };
const errors = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [String(s), { description: "an OpenAI-shaped error", content: { "application/json": { schema: error } } }]),
  );

/** What every POST may be answered besides 200: the stage all of them pass (app.ts, route). */
const postErrors = errors(400, 401, 404, 413, 429, 503, 504);

const requestBody = (schema: string) => ({
  required: true,
  content: { "application/json": { schema: { $ref: `#/components/schemas/${schema}` } } },
});

export function endpointOpenapi(extensions: readonly EndpointExtension[]): object {
  return {
    openapi: "3.1.0",
    info: {
      title: "fedflare inference endpoint",
      version: "0.1.0",
      description:
        "An OpenAI-compatible subset (models, completions) and fedflare's extensions: hidden states for split training, " +
        "and those of the federated methods whose models live here (each path says what it scores). " +
        "The endpoint sees the token ids it is sent. A request over one of its limits (rows, positions, max_tokens, answer bytes, " +
        "perturbation work; GET /health with the token lists them) is refused before it computes, with 400 or 413 naming the limit; " +
        "429 (queue full) and 503 (timed out in the queue) carry retry-after; 504 is the timeout while computing.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        CompletionRequest: toJsonSchema(CompletionRequest, { errorMode: "ignore" }),
        HiddenStatesRequest: toJsonSchema(HiddenStatesRequest, { errorMode: "ignore" }),
        ...Object.fromEntries(extensions.map((x) => [x.openapi.schema, toJsonSchema(x.request, { errorMode: "ignore" })])),
        Error: {
          type: "object",
          required: ["error"],
          properties: {
            error: {
              type: "object",
              properties: {
                message: { type: "string" },
                type: { type: "string" },
                param: { type: ["string", "null"] },
                code: { type: "string" },
              },
            },
          },
        },
      },
    },
    security: [{ bearer: [] }],
    paths: {
      "/health": {
        get: {
          summary:
            "Whether the endpoint is up; with the token also the model, fingerprint, execution provider (cuda or cpu), batching, " +
            "sessions, load and limits",
          security: [{}, { bearer: [] }],
          responses: { "200": { description: "status" }, ...errors(401) },
        },
      },
      "/v1/models": { get: { summary: "The served model", responses: { "200": { description: "OpenAI model list" }, ...errors(401) } } },
      "/v1/completions": {
        post: {
          summary: "OpenAI completions: scoring (max_tokens 0, echo, logprobs) and generation",
          requestBody: requestBody("CompletionRequest"),
          responses: {
            "200": { description: "OpenAI text_completion; echoed prompt log-probs as vLLM (first null)" },
            ...postErrors,
          },
        },
      },
      "/v1/hidden-states": {
        post: {
          summary: "fedflare extension: hidden states after `layer` decoder layers (transformers' hidden_states[layer]) for split training",
          requestBody: requestBody("HiddenStatesRequest"),
          responses: {
            "200": {
              description:
                "safetensors with `hidden_states` [batch, max length, hidden] in the dtype asked for; __metadata__: model, fingerprint, " +
                "layer, lengths (JSON)",
              content: { "application/octet-stream": {} },
            },
            ...postErrors,
          },
        },
      },
      ...Object.fromEntries(
        extensions.map((x) => [
          x.path,
          {
            post: {
              summary: x.openapi.summary,
              description: x.openapi.description,
              requestBody: requestBody(x.openapi.schema),
              responses: { "200": { description: x.openapi.answer }, ...postErrors },
            },
          },
        ]),
      ),
    },
  };
}
