// Global adapter versions: the safetensors bytes, and the PEFT folder's two files.
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { aggregator, intParam } from "../aggregator.ts";
import { errorResponse } from "../errors.ts";

export const versions = new Hono<{ Bindings: Cloudflare.Env }>();

const tensors = async (c: Context<{ Bindings: Cloudflare.Env }>) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const id = c.req.param("id") ?? "";
  const r = await aggregator(c.env, id).getVersion(id, version);
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  return new Response(r.value, { headers: { "content-type": "application/octet-stream", "cache-control": "public, max-age=31536000, immutable" } });
};

versions.get("/:id/versions/:version", tensors);
versions.get("/:id/versions/:version/adapter_model.safetensors", tensors);

versions.get("/:id/versions/:version/adapter_config.json", async (c) => {
  const r = await aggregator(c.env, c.req.param("id")).getAdapterConfig(c.req.param("id"));
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  return new Response(r.value, { headers: { "content-type": "application/json" } });
});
