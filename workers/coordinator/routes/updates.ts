// A client's update for a round: a signed PUT of safetensors bytes (the delta, with num_examples and
// metrics in its __metadata__) with an Idempotency-Key, handed to the aggregator to fold exactly once.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { SignatureError, verifyRequest } from "../../../src/protocol/signature.ts";
import { aggregator, answer, intParam } from "../aggregator.ts";
import { MAX_UPLOAD_BYTES, readBody } from "../body.ts";

export const updates = new Hono<{ Bindings: Cloudflare.Env }>();

updates.put("/:id/rounds/:round/updates/:client", async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  const key = c.req.header("idempotency-key");
  if (!key || key.length > 128) throw new HTTPException(400, { message: "an Idempotency-Key header (1-128 characters) is required" });
  const body = await readBody(c, MAX_UPLOAD_BYTES);
  let verified;
  try {
    verified = await verifyRequest(c.env.FEDFLARE_MASTER_KEY, c.req.raw.headers, "PUT", new URL(c.req.url).pathname, body);
  } catch (e) {
    if (e instanceof SignatureError) return c.json({ error: { code: e.code, message: e.message } }, 401);
    throw e;
  }
  if (verified.clientId !== c.req.param("client")) throw new HTTPException(403, { message: `signed by "${verified.clientId}" but uploaded for "${c.req.param("client")}"` });
  const sha = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(body))), (b) => b.toString(16).padStart(2, "0")).join("");
  const id = c.req.param("id");
  return answer(c, await aggregator(c.env, id).upload({ federationId: id, round, clientId: verified.clientId, idempotencyKey: key, bodySha256: sha, nonce: verified.nonce, body }));
});
