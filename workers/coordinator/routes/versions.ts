// Global adapter versions: the safetensors bytes, and the PEFT folder's two files (for offsite-tuning,
// the adapter's layers and a description of the split); an offsite federation's version 0 from the operator.
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { aggregator, answer, intParam } from "../aggregator.ts";
import { readBody } from "../../lib/http-body.ts";
import { operator, reader, signerOf, type Env } from "../credentials.ts";
import { errorResponse } from "../../lib/http-errors.ts";

export const versions = new Hono<Env>();

const tensors = async (c: Context<Env>) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const id = c.req.param("id") ?? "";
  const r = await aggregator(c.env, id).streamVersion(id, version, signerOf(c));
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  const { bytes, stream } = r.value;
  return new Response(stream, {
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(bytes),
      "cache-control": "private, max-age=31536000, immutable",
    },
  });
};

versions.get("/:id/versions/:version", reader(), tensors);
versions.get("/:id/versions/:version/adapter_model.safetensors", reader(), tensors);

versions.get("/:id/versions/:version/adapter_config.json", reader(), async (c) => {
  const r = await aggregator(c.env, c.req.param("id")).getAdapterConfig(c.req.param("id"), signerOf(c));
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  return new Response(r.value, { headers: { "content-type": "application/json" } });
});

/** A FedKSeed federation's per-seed change since an earlier version (?since=, default 0), sparse. */
versions.get("/:id/versions/:version/seeds", reader(), async (c) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const raw = c.req.query("since") ?? "0";
  if (!/^\d{1,9}$/.test(raw)) return errorResponse(c, 400, "bad_request", `since must be a non-negative integer, got "${raw}"`);
  const id = c.req.param("id") ?? "";
  const r = await aggregator(c.env, id).getSeedDiff(id, version, Number(raw), signerOf(c));
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  return new Response(r.value, {
    headers: { "content-type": "application/octet-stream", "cache-control": "private, max-age=31536000, immutable" },
  });
});

/** An offsite-tuning federation's initial adapter: the model owner's tensors, supplied by the operator. */
versions.put("/:id/versions/0", operator(), async (c) => {
  const id = c.req.param("id");
  // readBody rather than hono's bodyLimit: an adapter near the RPC limit is held once, where bodyLimit buffers a
  // body sent without Content-Length and arrayBuffer() then copies it.
  const body = await readBody(c, c.get("federation")!.maxUploadBytes);
  return answer(c, await aggregator(c.env, id).supplyInitial(id, body), 201);
});
