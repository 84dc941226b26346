// Who may talk to a client worker: the operator, signing with this client's secret (which it derives
// from the master key) as OPERATOR_ID, or the data owner with its bearer token. One middleware in front
// of every route but /health; capBody(MAX_REQUEST_BYTES) in front of it refuses an oversized body first,
// having read at most 4 KiB of it. It reads the body once, after the credential's headers pass, and hands
// it on as c.var.body.
import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "hono/utils/buffer";
import { errorResponse } from "../lib/http-errors.ts";
import { bearerToken } from "../../src/protocol/bearer.ts";
import { assertBody, bodyDigest, OPERATOR_ID, parseSignedHeaders, SignatureError, verifySignature } from "../../src/protocol/signature.ts";
import type { ClientEnv } from "./env.ts";

/** Task bodies are {"federationId", "round"}: a few dozen bytes. */
export const MAX_REQUEST_BYTES = 4096;

export type ClientApp = { Bindings: ClientEnv; Variables: { body: Uint8Array } };

/**
 * Replays within the signature's time window are not refused here (the coordinator refuses its own):
 * POST /tasks is idempotent and the job view only reads.
 */
export const clientAuth: MiddlewareHandler<ClientApp> = async (c, next) => {
  if (!c.env.CLIENT_SECRET)
    return errorResponse(
      c,
      503,
      "not_configured",
      "this client has no CLIENT_SECRET: set it with `wrangler secret put CLIENT_SECRET` (the operator gives it: " +
        "`fedflare client-secret --client <id>`)",
    );
  const authorization = c.req.header("authorization");
  if (authorization !== undefined) {
    const token = bearerToken(authorization);
    if (!c.env.CLIENT_OWNER_TOKEN)
      return errorResponse(
        c,
        401,
        "unauthorized",
        "this client takes no bearer token: its owner has not set CLIENT_OWNER_TOKEN (`wrangler secret put CLIENT_OWNER_TOKEN`)",
      );
    if (token === null)
      return errorResponse(
        c,
        401,
        "unauthorized",
        "the Authorization header must be `Bearer <token>`, the token 1-512 visible ASCII characters",
      );
    if (!(await timingSafeEqual(token, c.env.CLIENT_OWNER_TOKEN)))
      return errorResponse(c, 401, "unauthorized", "the bearer token is not this client's CLIENT_OWNER_TOKEN");
    c.set("body", new Uint8Array(await c.req.arrayBuffer()));
    return next();
  }
  try {
    const headers = parseSignedHeaders(c.req.raw.headers);
    if (headers.clientId !== OPERATOR_ID)
      return errorResponse(
        c,
        401,
        "unauthorized",
        `requests to a client are signed by the operator (as "${OPERATOR_ID}") or carry its owner's bearer token; ` +
          `this one is signed by "${headers.clientId}"`,
      );
    const url = new URL(c.req.url);
    await verifySignature(c.env.CLIENT_SECRET, headers, c.req.method, url.pathname + url.search);
    const body = new Uint8Array(await c.req.arrayBuffer());
    assertBody(headers, await bodyDigest(body));
    c.set("body", body);
  } catch (e) {
    if (e instanceof SignatureError)
      return errorResponse(
        c,
        401,
        e.code,
        e.code === "signature_missing" ? `${e.message} (signed by the operator), or Authorization: Bearer <CLIENT_OWNER_TOKEN>` : e.message,
      );
    throw e;
  }
  return next();
};
