// The endpoint's OpenAPI 3.1 document, its request bodies generated from the schemas that validate them.
import { toJsonSchema } from "@valibot/to-json-schema";
import { CompletionRequest, HiddenStatesRequest, PerturbedScoresRequest, PromptScoresRequest } from "./schemas.ts";

const error = { $ref: "#/components/schemas/Error" };
const errors = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [String(s), { description: "an OpenAI-shaped error", content: { "application/json": { schema: error } } }]),
  );

export function endpointOpenapi(): object {
  return {
    openapi: "3.1.0",
    info: {
      title: "fedflare inference endpoint",
      version: "0.1.0",
      description:
        "An OpenAI-compatible subset (models, completions) and fedflare's extensions: hidden states for split training, " +
        "perturbed scores for zeroth-order methods, prompt scores for black-box prompt tuning. " +
        "The endpoint sees the token ids it is sent. A request over one of its limits (rows, positions, max_tokens, answer bytes, " +
        "perturbation work; GET /health with the token lists them) is refused before it computes, with 400 or 413 naming the limit; " +
        "429 (queue full) and 503 (timed out in the queue) carry retry-after; 504 is the timeout while computing.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        CompletionRequest: toJsonSchema(CompletionRequest, { errorMode: "ignore" }),
        HiddenStatesRequest: toJsonSchema(HiddenStatesRequest, { errorMode: "ignore" }),
        PerturbedScoresRequest: toJsonSchema(PerturbedScoresRequest, { errorMode: "ignore" }),
        PromptScoresRequest: toJsonSchema(PromptScoresRequest, { errorMode: "ignore" }),
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
          requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/CompletionRequest" } } } },
          responses: {
            "200": { description: "OpenAI text_completion; echoed prompt log-probs as vLLM (first null)" },
            ...errors(400, 401, 404, 413, 429, 503, 504),
          },
        },
      },
      "/v1/hidden-states": {
        post: {
          summary: "fedflare extension: hidden states after `layer` decoder layers (transformers' hidden_states[layer]) for split training",
          requestBody: {
            required: true,
            content: { "application/json": { schema: { $ref: "#/components/schemas/HiddenStatesRequest" } } },
          },
          responses: {
            "200": {
              description:
                "safetensors with `hidden_states` [batch, max length, hidden] in the dtype asked for; __metadata__: model, fingerprint, " +
                "layer, lengths (JSON)",
              content: { "application/octet-stream": {} },
            },
            ...errors(400, 401, 404, 413, 429, 503, 504),
          },
        },
      },
      "/v1/perturbed-scores": {
        post: {
          summary:
            "fedflare extension for zeroth-order methods: " +
            "summed NLL per row under the model with its trained tensors at w0 + sum scale * z(seed)",
          description:
            "z is fedflare's seeded direction (Philox4x32-10, src/fl/zo/directions.ts) for the seed and each tensor's name; " +
            "w0 is PEFT's LoRA initialisation from federation_seed, or the model's own tensors. " +
            "A FedKSeed client whose model lives here sends its model and each two-point perturbation as terms, never tensors.",
          requestBody: {
            required: true,
            content: { "application/json": { schema: { $ref: "#/components/schemas/PerturbedScoresRequest" } } },
          },
          responses: {
            "200": {
              description: "{object: fedflare.perturbed_scores, model, nll: summed NLL of each row's masked tokens, tokens: their count}",
            },
            ...errors(400, 401, 404, 413, 429, 503, 504),
          },
        },
      },
      "/v1/prompt-scores": {
        post: {
          summary:
            "fedflare extension for FedBPT: summed NLL per row under the soft prompt p0 + A z, " +
            "projected by the endpoint from z and the seed",
          description:
            "p0 is the embeddings of prompt.tokens vocabulary tokens drawn from prompt.seed; " +
            "A's column i is fedflare's seeded Gaussian direction 'fedbpt/A/i' scaled by the embedding's standard deviation over " +
            "sqrt(dimension) (src/fl/bbt/fedbpt.ts). placement prefix puts the prompt before every row; " +
            "suffix puts token k wherever a row holds the id vocab_size + k.",
          requestBody: {
            required: true,
            content: { "application/json": { schema: { $ref: "#/components/schemas/PromptScoresRequest" } } },
          },
          responses: {
            "200": {
              description: "{object: fedflare.prompt_scores, model, nll: summed NLL of each row's masked tokens, tokens: their count}",
            },
            ...errors(400, 401, 404, 413, 429, 503, 504),
          },
        },
      },
    },
  };
}
