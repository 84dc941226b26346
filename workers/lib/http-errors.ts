// Every error leaves a worker (the coordinator, a client) as JSON {error: {code, message}} with its HTTP status.
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

const CODES: Record<number, string> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "unprocessable",
  429: "too_many_requests",
};

export function errorResponse(c: Context, status: ContentfulStatusCode, code: string, message: string): Response {
  return c.json({ error: { code, message } }, status);
}

export function onError(err: Error, c: Context): Response {
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    return errorResponse(c, status, CODES[status] ?? (status >= 500 ? "internal" : "error"), err.message);
  }
  // Unexpected errors are logged, and their message is not sent to the client.
  console.error(err);
  return errorResponse(c, 500, "internal", "internal error");
}

export function notFound(c: Context): Response {
  return errorResponse(c, 404, "not_found", `no route ${c.req.method} ${c.req.path}`);
}
