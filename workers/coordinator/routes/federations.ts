// Federations and their rounds: create, read, open the next round, read a round.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { aggregator, answer, intParam } from "../aggregator.ts";
import { readJson } from "../body.ts";

export const federations = new Hono<{ Bindings: Cloudflare.Env }>();

federations.post("/", async (c) => {
  const config = await readJson(c);
  const id = (config as { id?: unknown } | null)?.id;
  if (typeof id !== "string" || id === "") throw new HTTPException(400, { message: 'the federation config needs an "id" (string)' });
  return answer(c, await aggregator(c.env, id).createFederation(config), 201);
});

federations.get("/:id", async (c) => answer(c, await aggregator(c.env, c.req.param("id")).getFederation(c.req.param("id"))));

federations.get("/:id/metrics", async (c) => answer(c, await aggregator(c.env, c.req.param("id")).getMetrics(c.req.param("id"))));

federations.post("/:id/rounds", async (c) => answer(c, await aggregator(c.env, c.req.param("id")).openRound(c.req.param("id")), 201));

federations.get("/:id/rounds/:round", async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  return answer(c, await aggregator(c.env, c.req.param("id")).getRound(c.req.param("id"), round));
});
