// A secure round's key phases (SecAgg+; docs/ARCHITECTURE.md, "Secure aggregation"): a sampled client reads
// what its phase gives it and sends its advert, its sealed shares and its unmask answer, each signed; its
// masked input goes through the updates route. The aggregator checks each message against the round.
import { Hono } from "hono";
import { aggregator, answer, intParam } from "../aggregator.ts";
import { pathSigner, requireCredential, type Env } from "../credentials.ts";
import type { SecAggPhaseName } from "../../../src/protocol/secure-aggregation.ts";

export const secureAggregation = new Hono<Env>();

/** The largest key-phase message: 255 sealed shares or revealed shares, each under a client id of at most 64 characters. */
export const SECAGG_MESSAGE_BYTES = 128 * 1024;

const PATH = "/:id/rounds/:round/secagg/:client";
const MESSAGES: readonly SecAggPhaseName[] = ["advert", "shares", "unmask"];

secureAggregation.get(PATH, requireCredential(["member"]), async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  const client = pathSigner(c).clientId;
  const id = c.req.param("id");
  return answer(c, await aggregator(c.env, id).secAggView(id, round, client));
});

for (const kind of MESSAGES)
  secureAggregation.put(`${PATH}/${kind}`, requireCredential(["member"], SECAGG_MESSAGE_BYTES), async (c) => {
    const round = intParam(c, "round");
    if (round instanceof Response) return round;
    const signer = pathSigner(c);
    const id = c.req.param("id");
    return answer(
      c,
      await aggregator(c.env, id).secAggMessage(kind, {
        federationId: id,
        round,
        clientId: signer.clientId,
        nonce: signer.nonce,
        body: c.get("body")!,
      }),
    );
  });
