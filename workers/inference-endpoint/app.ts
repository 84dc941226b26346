// The reference inference endpoint's HTTP API (hono): an OpenAI-compatible subset (GET /v1/models,
// POST /v1/completions), fedflare's POST /v1/hidden-states, and the methods' extensions from their
// registry (src/fl/methods/endpoint.ts), behind a bearer token unless started without one, every request
// within the limits of limits.ts, and every error as JSON in OpenAI's shape {error: {message, type, param, code}}.
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { timingSafeEqual } from "hono/utils/buffer";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import * as v from "valibot";
import type { Demand } from "../../src/engine/endpoint.ts";
import { ModelError } from "../../src/engine/errors.ts";
import { endpointExtensions } from "../../src/fl/methods/endpoint.ts";
import { bearerToken } from "../../src/protocol/bearer.ts";
import { complete, type Engine } from "./completions.ts";
import { completionDemand, hiddenStatesDemand, promptIds, promptTextDemand } from "./demands.ts";
import { Gate, GateFull } from "./gate.ts";
import { hiddenStates } from "./hidden-states.ts";
import { Refused, refusal, type EndpointLimits } from "./limits.ts";
import { endpointOpenapi } from "./openapi.ts";
import { CompletionRequest, HiddenStatesRequest } from "./schemas.ts";

export interface EndpointOptions {
  engine: Engine;
  /** Requests must carry `Authorization: Bearer <token>`; null only when started with noAuth. */
  token: string | null;
  provider: "cuda" | "cpu";
  limits: EndpointLimits;
  maxBatch: number;
  maxWaitMs: number;
}

const TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  404: "not_found_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
  500: "server_error",
  503: "server_error",
  504: "server_error",
};

function openaiError(c: Context, status: ContentfulStatusCode, code: string, message: string, param: string | null = null): Response {
  return c.json({ error: { message, type: TYPES[status] ?? "invalid_request_error", param, code } }, status);
}

/** The body's size and shape, measured (`demand`) and prepared for the route's handler (`input`). */
interface Measured<I> {
  demand: Demand;
  input: I;
}

export function endpointApp(o: EndpointOptions): Hono {
  const { engine, limits } = o;
  const extensions = endpointExtensions.all();
  /** Rows each extension has answered, by its counter's name, for /health. */
  const served = new Map(extensions.map((x) => [x.counter, 0]));
  const gate = new Gate(limits.maxConcurrent, limits.maxQueued);
  const app = new Hono();
  // Only bearerToken's strict shape is taken, as by the coordinator and the client workers; the token is
  // compared in constant time (hashed first, so the length does not show either).
  const authorized = async (header: string | undefined) => {
    const token = bearerToken(header);
    return o.token === null || (token !== null && (await timingSafeEqual(token, o.token)));
  };
  const unauthorized = (c: Context) =>
    openaiError(c, 401, "invalid_api_key", "a valid bearer token is required: Authorization: Bearer <token>");

  // Without credentials, only that the endpoint is up; the model, its fingerprint and the load are for callers with the token.
  app.get("/health", async (c) => {
    const header = c.req.header("authorization");
    if (header === undefined && o.token !== null) return c.json({ status: "ok" });
    if (!(await authorized(header))) return unauthorized(c);
    return c.json({
      status: "ok",
      model: engine.name,
      fingerprint: engine.fingerprint,
      provider: o.provider,
      max_batch: o.maxBatch,
      max_wait_ms: o.maxWaitMs,
      batches: engine.forward.stats.batches,
      largest_batch: engine.forward.stats.largest,
      hidden_state_rows: engine.served.hiddenStateRows,
      ...Object.fromEntries(served),
      sessions: engine.sessions.stats(),
      ...gate.stats(),
      limits,
    });
  });
  app.get("/openapi.json", (c) => c.json(endpointOpenapi(extensions)));
  app.use("/v1/*", async (c, next) => {
    if (!(await authorized(c.req.header("authorization")))) return unauthorized(c);
    await next();
  });
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: limits.maxBodyBytes,
      onError: (c) => openaiError(c, 413, "body_too_large", `the body exceeds ${limits.maxBodyBytes} bytes (maxBodyBytes)`),
    }),
  );

  app.get("/v1/models", (c) => c.json({ object: "list", data: [{ id: engine.name, object: "model", created: 0, owned_by: "fedflare" }] }));

  const badRequest = (c: Context, e: unknown) => {
    // Bad values the handlers or the model find (ids outside the vocabulary, layers beyond the model) are the caller's.
    if (e instanceof RangeError || (e instanceof ModelError && e.code === "input_invalid"))
      return openaiError(c, 400, "invalid_request", e.message);
    throw e;
  };

  /**
   * The one stage every POST passes: the body parsed and validated for this model (malformed JSON, a
   * schema failure, another model are 400/404 naming the field), measured and held to the limits (400 or
   * 413 naming the limit), then a computing slot (429 when the queue is full, 503 when the timeout passes
   * in the queue), and `answer` raced against the timeout (504). The timeout cannot interrupt
   * synchronous work (the perturbation's draws: maxPerturbationWork bounds those); past it the request
   * is answered, keeps its slot until its work ends, and a completion stops before its next prompt.
   */
  const route =
    <S extends v.GenericSchema<unknown, { model: string }>, I>(
      schema: S,
      measure: (body: v.InferOutput<S>) => Measured<I>,
      answer: (input: I, signal: AbortSignal) => Promise<Response>,
    ) =>
    async (c: Context) => {
      const signal = AbortSignal.timeout(limits.timeoutMs);
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
      if (parsed.output.model !== engine.name)
        return openaiError(c, 404, "model_not_found", `this endpoint serves "${engine.name}", not "${parsed.output.model}"`, "model");
      let measured: Measured<I>;
      try {
        measured = measure(parsed.output);
      } catch (e) {
        if (e instanceof Refused) return openaiError(c, e.refusal.status, e.refusal.code, e.refusal.message, e.refusal.param);
        return badRequest(c, e);
      }
      const refused = refusal(measured.demand, limits, engine.model.config.maxPositions);
      if (refused) return openaiError(c, refused.status, refused.code, refused.message, refused.param);
      let leave: () => void;
      try {
        leave = await gate.enter(signal);
      } catch (e) {
        if (!(e instanceof GateFull) && !signal.aborted) throw e;
        c.header("retry-after", "1");
        if (e instanceof GateFull)
          return openaiError(
            c,
            429,
            "too_many_requests",
            `the endpoint is busy: ${limits.maxConcurrent} requests compute at once (maxConcurrent) and ` +
              `${limits.maxQueued} more may wait (maxQueued); retry later`,
          );
        return openaiError(
          c,
          503,
          "queue_timeout",
          `the request waited ${limits.timeoutMs} ms (timeoutMs) for one of the ${limits.maxConcurrent} computing slots (maxConcurrent); ` +
            `retry later`,
        );
      }
      const work = answer(measured.input, signal).finally(leave);
      const timedOut = new Promise<null>((resolve) => signal.addEventListener("abort", () => resolve(null), { once: true }));
      try {
        const res = await Promise.race([work, timedOut]);
        if (res) return res;
        // Answered already: what the abandoned work throws (the signal's abort) goes nowhere.
        work.catch(() => undefined);
        return openaiError(c, 504, "timeout", `the request did not finish within ${limits.timeoutMs} ms (timeoutMs)`);
      } catch (e) {
        return badRequest(c, e);
      }
    };

  app.post(
    "/v1/completions",
    route(
      CompletionRequest,
      (body) => {
        const early = refusal(promptTextDemand(body), limits, engine.model.config.maxPositions);
        if (early) throw new Refused(early);
        const prompts = promptIds(engine.model, body.prompt);
        return { demand: completionDemand(prompts, body), input: { body, prompts } };
      },
      async ({ body, prompts }, signal) =>
        Response.json(await complete(engine, body, prompts, body.seed ?? Math.floor(Math.random() * 2 ** 31), signal)),
    ),
  );
  app.post(
    "/v1/hidden-states",
    route(
      HiddenStatesRequest,
      (body) => ({ demand: hiddenStatesDemand(engine.model, body), input: body }),
      async (body) => new Response(await hiddenStates(engine, body), { headers: { "content-type": "application/octet-stream" } }),
    ),
  );
  for (const x of extensions) {
    // hono answers with the first route that matches: an extension at a path the endpoint serves would never be reached.
    if (app.routes.some((r) => r.method === "POST" && r.path === x.path))
      throw new Error(`the endpoint extension at ${x.path} takes a route the endpoint serves itself`);
    app.post(
      x.path,
      route(
        x.request,
        (body) => {
          const demand = x.measure(engine.model, body);
          return { demand, input: { body, rows: demand.rows.length } };
        },
        async ({ body, rows }, signal) => {
          const res = await x.answer(engine, body, signal);
          served.set(x.counter, served.get(x.counter)! + rows);
          return res;
        },
      ),
    );
  }

  app.notFound((c) => openaiError(c, 404, "not_found", `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof HTTPException) return openaiError(c, err.status as ContentfulStatusCode, "error", err.message);
    console.error(err);
    return openaiError(c, 500, "internal", "internal error");
  });
  return app;
}
