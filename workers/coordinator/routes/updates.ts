// A client's update for a round: a signed PUT of safetensors bytes (the delta, with num_examples and
// metrics in its __metadata__) with an Idempotency-Key, handed to the aggregator to fold exactly once.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { shardObjectName, shardOf } from "../../../src/fl/shards.ts";
import { aggregator, answer, intParam } from "../aggregator.ts";
import { pathSigner, requireCredential, type Env } from "../credentials.ts";

export const updates = new Hono<Env>();

updates.put(
  "/:id/rounds/:round/updates/:client",
  async (c, next) => {
    const key = c.req.header("idempotency-key");
    if (!key || key.length > 128) throw new HTTPException(400, { message: "an Idempotency-Key header (1-128 characters) is required" });
    return next();
  },
  requireCredential(["member"], (fed) => fed.maxUploadBytes),
  async (c) => {
    const round = intParam(c, "round");
    if (round instanceof Response) return round;
    const signer = pathSigner(c);
    const id = c.req.param("id");
    // A sharded federation's upload goes to the shard object its round and client hash to (src/fl/shards.ts).
    const shards = c.get("federation")?.shards ?? 1;
    const shard = shards > 1 ? shardOf(round, signer.clientId, shards) : undefined;
    return answer(
      c,
      await aggregator(c.env, shard === undefined ? id : shardObjectName(id, shard)).upload({
        federationId: id,
        round,
        clientId: signer.clientId,
        idempotencyKey: c.req.header("idempotency-key")!,
        bodySha256: c.get("bodySha256")!,
        nonce: signer.nonce,
        body: c.get("body")!,
        ...(shard === undefined ? {} : { shard }),
      }),
    );
  },
);
