// Global adapter versions: the safetensors bytes, and the PEFT folder's two files (for offsite-tuning,
// the adapter's layers and a description of the split); an offsite federation's version 0 from the operator.
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { aggregator, answer, intParam } from "../aggregator.ts";
import { readBody } from "../../lib/http-body.ts";
import { operator, reader, signerOf, type Env } from "../credentials.ts";
import { errorResponse } from "../../lib/http-errors.ts";
import { halfPrecisionStream } from "../../../src/protocol/half-precision.ts";
import { SafetensorsError } from "../../../src/protocol/safetensors.ts";
import { keepBytes, keepVersion, versionKey } from "../version-store.ts";

export const versions = new Hono<Env>();

/** A version's, or a view's, bytes: immutable, and from R2 or from the aggregator. */
const headers = (bytes: number, source: "r2" | "aggregator") => ({
  "content-type": "application/octet-stream",
  "content-length": String(bytes),
  "cache-control": "private, max-age=31536000, immutable",
  "x-fedflare-source": source,
});

const tensors = async (c: Context<Env>) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const id = c.req.param("id") ?? "";
  // ?dtype=F16 or BF16: the version converted as it streams (half the bytes; kept in R2 beside the F32 one).
  const dtype = c.req.query("dtype") ?? "F32";
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16")
    return errorResponse(c, 400, "bad_request", `dtype is F32, F16 or BF16, not "${dtype.slice(0, 20)}"`);
  const base = versionKey(c.env, c.get("federation")!, version);
  const key = base && (dtype === "F32" ? base : `${base}.${dtype}`);
  const kept = key ? await c.env.VERSIONS!.get(key) : null;
  if (kept) return new Response(kept.body, { headers: headers(kept.size, "r2") });
  const r = await aggregator(c.env, id).streamVersion(id, version, signerOf(c));
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  let { bytes, stream } = r.value;
  if (dtype !== "F32") {
    try {
      ({ bytes, stream } = await halfPrecisionStream(stream, dtype));
    } catch (e) {
      if (!(e instanceof SafetensorsError)) throw e;
      return errorResponse(c, 422, "version_unconvertible", `version ${version} cannot be served as ${dtype}: ${e.message}`);
    }
  }
  return new Response(key ? keepVersion(c.env, c.executionCtx, key, stream, bytes) : stream, { headers: headers(bytes, "aggregator") });
};

versions.get("/:id/versions/:version", reader(), tensors);
versions.get("/:id/versions/:version/adapter_model.safetensors", reader(), tensors);

versions.get("/:id/versions/:version/adapter_config.json", reader(), async (c) => {
  const r = await aggregator(c.env, c.req.param("id")).getAdapterConfig(c.req.param("id"), signerOf(c));
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  return new Response(r.value, { headers: { "content-type": "application/json" } });
});

/**
 * A method's derived read of a version (its server side's `views`: FedKSeed's "seeds", the per-seed
 * change since ?since=, sparse; LoRA's "rank", what a client of rank r fetches). A view's parameters are
 * non-negative integers (VersionView in src/fl/methods/method.ts): anything else is refused here, and at most
 * 8 of them reach the object. A view of a version is as immutable as the version, so it is kept in R2 beside
 * it once read, as the version is, under its name and its parameters in order.
 */
versions.get("/:id/versions/:version/:view", reader(), async (c) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const view = c.req.param("view");
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(view))
    return errorResponse(c, 404, "version_not_found", `no "${view.slice(0, 40)}" view of a version`);
  // A plain object: what a query parser returns need not cross RPC.
  const query = Object.fromEntries(Object.entries(c.req.query()));
  const bad = Object.entries(query).find(([k, v]) => !/^[a-z][a-z0-9_]{0,31}$/.test(k) || !/^\d{1,9}$/.test(v));
  if (Object.keys(query).length > 8 || bad)
    return errorResponse(
      c,
      400,
      "bad_request",
      `a version view takes at most 8 parameters, each a non-negative integer${
        bad ? `: got ${bad[0].slice(0, 32)}="${bad[1].slice(0, 20)}"` : ""
      }`,
    );
  const base = versionKey(c.env, c.get("federation")!, version);
  // Each value as its number reads (no leading zeros): one key per view; the object refuses a parameter its view does not read.
  const params = Object.keys(query)
    .sort()
    .map((k) => `.${k}-${Number(query[k])}`)
    .join("");
  const key = base && `${base}.${view}${params}`;
  const kept = key ? await c.env.VERSIONS!.get(key) : null;
  if (kept) return new Response(kept.body, { headers: headers(kept.size, "r2") });
  const id = c.req.param("id") ?? "";
  const r = await aggregator(c.env, id).getVersionView(id, version, view, query, signerOf(c));
  if (!r.ok) return errorResponse(c, r.error.status as ContentfulStatusCode, r.error.code, r.error.message);
  if (key) keepBytes(c.env, c.executionCtx, key, r.value);
  return new Response(r.value, { headers: headers(r.value.length, "aggregator") });
});

/** An offsite-tuning federation's initial adapter: the model owner's tensors, supplied by the operator. */
versions.put("/:id/versions/0", operator(), async (c) => {
  const id = c.req.param("id");
  // readBody rather than hono's bodyLimit: an adapter near the RPC limit is held once, where bodyLimit buffers a
  // body sent without Content-Length and arrayBuffer() then copies it.
  const body = await readBody(c, c.get("federation")!.maxUploadBytes);
  return answer(c, await aggregator(c.env, id).supplyInitial(id, body), 201);
});
