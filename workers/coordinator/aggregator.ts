// The aggregator object of a federation (one Durable Object per federation id) and its answers as HTTP.
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Result } from "../../durable-objects/aggregator/errors.ts";
import { errorResponse } from "./errors.ts";

export function aggregator(env: Cloudflare.Env, federationId: string) {
  return env.AGGREGATOR.getByName(federationId);
}

/** A JSON answer for a result: its value, or its refusal with status and code. */
export function answer<T>(c: Context, r: Result<T>, status: ContentfulStatusCode = 200): Response {
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  return c.json(r.value as object, status);
}

/** Path parameters that must be non-negative integers (round and version numbers). */
export function intParam(c: Context, name: string): number | Response {
  const raw = c.req.param(name) ?? "";
  if (!/^\d{1,9}$/.test(raw)) return errorResponse(c, 400, "bad_request", `${name} must be a non-negative integer, got "${raw}"`);
  return Number(raw);
}
