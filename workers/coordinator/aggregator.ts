// The aggregator object of a federation (one Durable Object per federation id) and its answers as HTTP.
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Result } from "../../durable-objects/aggregator/errors.ts";
import { errorResponse } from "../lib/http-errors.ts";

export function aggregator(env: Cloudflare.Env, federationId: string) {
  return env.AGGREGATOR.getByName(federationId);
}

/** The object that lists federation ids; its name cannot be a federation id (ids start with a letter or digit). */
export function registry(env: Cloudflare.Env) {
  return env.AGGREGATOR.getByName("_registry");
}

/** A JSON answer for a result: its value, or its refusal with status and code. */
export function answer<T>(c: Context, r: Result<T>, status: ContentfulStatusCode = 200): Response {
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  return c.json(r.value as object, status);
}

/** An SVG chart as the dashboard reads it: never cached, since each refresh may add points. */
export const svgResponse = (svg: string) =>
  new Response(svg, { headers: { "content-type": "image/svg+xml", "cache-control": "no-store" } });

/** A query parameter that must be a whole number in [min, max], `fallback` when absent. */
export function queryInt(c: Context, name: string, fallback: number, min: number, max: number): number | Response {
  const raw = c.req.query(name);
  if (raw === undefined) return fallback;
  const n = /^\d{1,10}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= min && n <= max))
    return errorResponse(c, 400, "bad_request", `${name} must be a whole number in [${min}, ${max}], got "${raw.slice(0, 20)}"`);
  return n;
}

/** Path parameters that must be non-negative integers (round and version numbers). */
export function intParam(c: Context, name: string): number | Response {
  const raw = c.req.param(name) ?? "";
  if (!/^\d{1,9}$/.test(raw)) return errorResponse(c, 400, "bad_request", `${name} must be a non-negative integer, got "${raw}"`);
  return Number(raw);
}
