// Federations and their rounds: create, read, open the next round, read a round.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { linePlotSvg } from "../../../src/report/line-plot.ts";
import { aggregator, answer, intParam, registry } from "../aggregator.ts";
import { readJson } from "../body.ts";

export const federations = new Hono<{ Bindings: Cloudflare.Env }>();

federations.post("/", async (c) => {
  const config = await readJson(c);
  const id = (config as { id?: unknown } | null)?.id;
  if (typeof id !== "string" || id === "") throw new HTTPException(400, { message: 'the federation config needs an "id" (string)' });
  const created = await aggregator(c.env, id).createFederation(config);
  if (created.ok) await registry(c.env).register(id);
  return answer(c, created, 201);
});

federations.get("/", async (c) => {
  const ids = await registry(c.env).registered();
  const views = [];
  for (const id of ids) {
    const v = await aggregator(c.env, id).getFederation(id);
    if ("value" in v) views.push(v.value);
  }
  return c.json(views);
});

/** Per-round client train loss (example-weighted) as an SVG chart, for the dashboard. */
federations.get("/:id/plot.svg", async (c) => {
  const id = c.req.param("id");
  const m = await aggregator(c.env, id).getMetrics(id);
  if (!m.ok) return answer(c, m);
  const points = m.value.flatMap((r) => {
    const loss = r.result && "metrics" in r.result ? r.result.metrics.train_loss : undefined;
    return loss === undefined ? [] : [[r.round, loss] as const];
  });
  const svg = linePlotSvg([{ name: "clients' train loss (example-weighted)", points: points.length ? points : [[0, 0]], color: "#1f77b4" }], {
    title: `${id}: train loss by round`,
    xLabel: "round",
    yLabel: "loss (nats per token)",
    integerX: true,
  });
  return new Response(svg, { headers: { "content-type": "image/svg+xml", "cache-control": "no-store" } });
});

federations.get("/:id", async (c) => answer(c, await aggregator(c.env, c.req.param("id")).getFederation(c.req.param("id"))));

federations.get("/:id/metrics", async (c) => answer(c, await aggregator(c.env, c.req.param("id")).getMetrics(c.req.param("id"))));

federations.post("/:id/rounds", async (c) => answer(c, await aggregator(c.env, c.req.param("id")).openRound(c.req.param("id")), 201));

federations.get("/:id/rounds/:round", async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  return answer(c, await aggregator(c.env, c.req.param("id")).getRound(c.req.param("id"), round));
});
