// Federations and their rounds: create, read, open the next round, read a round; the operator's
// actions on an open round (close it now, fail it) and on a federation (delete it).
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import * as v from "valibot";
import type { Result } from "../../../durable-objects/aggregator/errors.ts";
import type { FederationView } from "../../../durable-objects/aggregator/federation.ts";
import { linePlotSvg } from "../../../src/report/line-plot.ts";
import { METRICS_PAGE } from "../../../src/protocol/federation.ts";
import { aggregator, answer, intParam, queryInt, registry, svgResponse } from "../aggregator.ts";
import { capBody, MAX_JSON_BYTES, parseJsonBody } from "../../lib/http-body.ts";
import { forget, operator, operatorOnAnyId, reader, signerOf, viewer, type Env } from "../credentials.ts";
import { dropVersions } from "../version-store.ts";

export const federations = new Hono<Env>();

federations.post("/", operator(), capBody(MAX_JSON_BYTES), async (c) => {
  const config = parseJsonBody(await c.req.text());
  const id = (config as { id?: unknown } | null)?.id;
  if (typeof id !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id))
    throw new HTTPException(400, {
      message: "the federation config needs an \"id\": 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    });
  const stub = aggregator(c.env, id);
  const created = (await stub.createFederation(config)) as unknown as Result<FederationView>;
  // Registered after its object holds it; a create retried after a crash between the two registers it then.
  const existing: Result<FederationView> | null =
    !created.ok && created.error.code === "federation_exists"
      ? ((await stub.getFederation(id)) as unknown as Result<FederationView>)
      : null;
  const view = created.ok ? created.value : existing?.ok ? existing.value : null;
  if (view)
    await registry(c.env).register({
      id,
      clients: view.config.clients,
      maxUploadBytes: view.config.maxUploadBytes,
      createdAt: view.createdAt,
      ...(view.config.shards === undefined ? {} : { shards: view.config.shards }),
    });
  return answer(c, created, 201);
});

federations.get("/", viewer(), async (c) => {
  const ids = await registry(c.env).registered();
  const views = [];
  for (const id of ids) {
    const v = await aggregator(c.env, id).getFederation(id);
    if ("value" in v) views.push(v.value);
  }
  return c.json(views);
});

/** Per-round client train loss (example-weighted) as an SVG chart, for the dashboard: every page of metrics. */
federations.get("/:id/plot.svg", viewer(), async (c) => {
  const id = c.req.param("id");
  const points: (readonly [number, number])[] = [];
  for (let from = 0; ; ) {
    const m = await aggregator(c.env, id).getMetrics(id, from);
    if (!m.ok) return answer(c, m);
    if (m.value.length === 0) break;
    for (const r of m.value) {
      const loss = r.result && "metrics" in r.result ? r.result.metrics.train_loss : undefined;
      if (loss !== undefined) points.push([r.round, loss]);
    }
    from = m.value.at(-1)!.round + 1;
  }
  const svg = linePlotSvg(
    [{ name: "clients' train loss (example-weighted)", points: points.length ? points : [[0, 0]], color: "#1f77b4" }],
    {
      title: `${id}: train loss by round`,
      xLabel: "round",
      yLabel: "loss (nats per token)",
      integerX: true,
    },
  );
  return svgResponse(svg);
});

federations.get("/:id", reader(), async (c) => {
  const id = c.req.param("id");
  const client = signerOf(c);
  return answer(
    c,
    client === undefined ? await aggregator(c.env, id).getFederation(id) : await aggregator(c.env, id).getFederationAsMember(id, client),
  );
});

federations.delete("/:id", operatorOnAnyId(), async (c) => {
  const id = c.req.param("id");
  // The object's storage first, then the registry: a delete cut off between the two leaves an entry that
  // names an empty object (answered "not found"), and a retried delete finishes it; never a registry
  // without the entry and an object still holding the federation, which a re-create would bring back.
  const deleted = (await aggregator(c.env, id).deleteFederation(id)) as unknown as Result<{ deleted: string }>;
  if (!deleted.ok && deleted.error.code !== "federation_not_found") return answer(c, deleted);
  const registered = c.get("federation") !== undefined;
  await registry(c.env).unregister(id);
  forget(id);
  await dropVersions(c.env, id);
  if (!deleted.ok && !registered) return answer(c, deleted);
  return c.json({ deleted: id });
});

/** A page of the rounds' metrics: ?from= (the first round, default 0) and ?limit= (default and most METRICS_PAGE.rounds). */
federations.get("/:id/metrics", viewer(), async (c) => {
  const from = queryInt(c, "from", 0, 0, 1e9);
  if (from instanceof Response) return from;
  const limit = queryInt(c, "limit", METRICS_PAGE.rounds, 1, METRICS_PAGE.rounds);
  if (limit instanceof Response) return limit;
  return answer(c, await aggregator(c.env, c.req.param("id")).getMetrics(c.req.param("id"), from, limit));
});

federations.post("/:id/rounds", operator(), async (c) =>
  answer(c, await aggregator(c.env, c.req.param("id")).openRound(c.req.param("id")), 201),
);

federations.get("/:id/rounds/:round", reader(), async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  const id = c.req.param("id");
  const client = signerOf(c);
  return answer(
    c,
    client === undefined
      ? await aggregator(c.env, id).getRound(id, round)
      : await aggregator(c.env, id).getRoundAsMember(id, round, client),
  );
});

federations.post("/:id/rounds/:round/close", operator(), async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  return answer(c, await aggregator(c.env, c.req.param("id")).closeRound(c.req.param("id"), round));
});

const FailBody = v.strictObject({ reason: v.optional(v.pipe(v.string(), v.maxLength(500)), "no reason given") });

federations.post("/:id/rounds/:round/fail", operator(), capBody(MAX_JSON_BYTES), async (c) => {
  const round = intParam(c, "round");
  if (round instanceof Response) return round;
  const raw = c.req.header("content-length") === "0" || !c.req.raw.body ? {} : parseJsonBody(await c.req.text());
  const body = v.safeParse(FailBody, raw);
  if (!body.success)
    throw new HTTPException(400, { message: `the body is {"reason": string of at most 500 characters}: ${body.issues[0].message}` });
  return answer(c, await aggregator(c.env, c.req.param("id")).failRound(c.req.param("id"), round, body.output.reason));
});
