// A sampled client's heartbeat while it trains a round (src/protocol/progress.ts): signed, a few bytes,
// at most one every two seconds per client; the aggregator keeps the latest in memory for the round's
// viewers (durable-objects/aggregator/round-progress.ts).
import { Hono } from "hono";
import { PROGRESS_BYTES } from "../../../src/protocol/progress.ts";
import { aggregator, answer, intParam } from "../aggregator.ts";
import { pathSigner, requireCredential, type Env } from "../credentials.ts";

export const progress = new Hono<Env>();

progress.put("/:id/rounds/:round/progress/:client", requireCredential(["member"], PROGRESS_BYTES), async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  const signer = pathSigner(c);
  const id = c.req.param("id");
  return answer(c, await aggregator(c.env, id).reportProgress(id, round, signer.clientId, c.get("body")!));
});
