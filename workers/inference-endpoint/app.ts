// The reference inference endpoint's HTTP API (hono): an OpenAI-compatible subset (GET /v1/models,
// POST /v1/completions) and fedflare's POST /v1/hidden-states, /v1/perturbed-scores and /v1/prompt-scores, behind a bearer token, with body limits and every error as JSON in OpenAI's
// shape {error: {message, type, param, code}}.
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import * as v from "valibot";
import { complete, type Engine } from "./completions.ts";
import { hiddenStates } from "./hidden-states.ts";
import { endpointOpenapi } from "./openapi.ts";
import { perturbedScores } from "./perturbed-scores.ts";
import { promptScores } from "./prompt-scores.ts";
import { CompletionRequest, HiddenStatesRequest, PerturbedScoresRequest, PromptScoresRequest } from "./schemas.ts";

export interface EndpointOptions {
  engine: Engine;
  /** Requests must carry `Authorization: Bearer <token>` when set. */
  token?: string;
  provider: "cuda" | "cpu";
  maxBodyBytes?: number;
  maxBatch: number;
  maxWaitMs: number;
}

const TYPES: Record<number, string> = { 400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error", 500: "server_error" };

function openaiError(c: Context, status: ContentfulStatusCode, code: string, message: string, param: string | null = null): Response {
  return c.json({ error: { message, type: TYPES[status] ?? "invalid_request_error", param, code } }, status);
}

/** Equal-length strings compared without an early exit, so timing does not reveal the token. */
function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export function endpointApp(o: EndpointOptions): Hono {
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok", model: o.engine.name, fingerprint: o.engine.fingerprint, provider: o.provider, max_batch: o.maxBatch, max_wait_ms: o.maxWaitMs, batches: o.engine.forward.batchSizes.length, largest_batch: Math.max(0, ...o.engine.forward.batchSizes), hidden_state_rows: o.engine.served.hiddenStateRows, perturbed_rows: o.engine.served.perturbedRows, prompt_rows: o.engine.served.promptRows }));
  app.get("/openapi.json", (c) => c.json(endpointOpenapi()));
  app.use("/v1/*", async (c, next) => {
    if (o.token && !sameToken(c.req.header("authorization") ?? "", `Bearer ${o.token}`)) return openaiError(c, 401, "invalid_api_key", "a valid bearer token is required: Authorization: Bearer <token>");
    await next();
  });
  app.use("/v1/*", bodyLimit({ maxSize: o.maxBodyBytes ?? 8 << 20, onError: (c) => openaiError(c, 413, "body_too_large", `the body exceeds ${o.maxBodyBytes ?? 8 << 20} bytes`) }));

  app.get("/v1/models", (c) => c.json({ object: "list", data: [{ id: o.engine.name, object: "model", created: 0, owned_by: "fedflare" }] }));

  /**
   * A POST body parsed and validated for this model, handed to `answer`; malformed JSON, a schema failure,
   * another model, and a RangeError from `answer` (ids outside the vocabulary, layers beyond the model)
   * are 400/404 errors naming the field.
   */
  const route = <S extends v.GenericSchema<unknown, { model: string }>>(schema: S, answer: (body: v.InferOutput<S>) => Promise<Response>) => async (c: Context) => {
    let json: unknown;
    try {
      json = await c.req.json();
    } catch (e) {
      return openaiError(c, 400, "invalid_json", `the body is not valid JSON: ${(e as Error).message}`);
    }
    const parsed = v.safeParse(schema, json);
    if (!parsed.success) {
      const param = v.getDotPath(parsed.issues[0]);
      return openaiError(c, 400, "invalid_request", `${param ?? "body"}: ${parsed.issues[0].message}`, param);
    }
    if (parsed.output.model !== o.engine.name) return openaiError(c, 404, "model_not_found", `this endpoint serves "${o.engine.name}", not "${parsed.output.model}"`, "model");
    try {
      return await answer(parsed.output);
    } catch (e) {
      if (e instanceof RangeError) return openaiError(c, 400, "invalid_request", e.message);
      throw e;
    }
  };

  app.post("/v1/completions", route(CompletionRequest, async (body) => Response.json(await complete(o.engine, body, body.seed ?? Math.floor(Math.random() * 2 ** 31)))));
  app.post("/v1/hidden-states", route(HiddenStatesRequest, async (body) => new Response(await hiddenStates(o.engine, body), { headers: { "content-type": "application/octet-stream" } })));
  app.post("/v1/perturbed-scores", route(PerturbedScoresRequest, async (body) => Response.json(await perturbedScores(o.engine, body))));
  app.post("/v1/prompt-scores", route(PromptScoresRequest, async (body) => Response.json(await promptScores(o.engine, body))));

  app.notFound((c) => openaiError(c, 404, "not_found", `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof HTTPException) return openaiError(c, err.status as ContentfulStatusCode, "error", err.message);
    console.error(err);
    return openaiError(c, 500, "internal", "internal error");
  });
  return app;
}
