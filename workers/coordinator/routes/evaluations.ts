// Federated evaluation (issue 22; durable-objects/aggregator/evaluations.ts): the operator asks the clients
// to evaluate a version, each member reports its own held-out scores of it (signed, a few numbers, never an
// example), and readers see the example-weighted mean and each client's report. Mounted before the versions
// routes, whose method views would take the GET's path.
import { Hono } from "hono";
import { EVALUATION_BYTES } from "../../../src/protocol/evaluation.ts";
import { linePlotSvg } from "../../../src/report/line-plot.ts";
import { errorResponse } from "../../lib/http-errors.ts";
import { aggregator, answer, intParam, svgResponse } from "../aggregator.ts";
import { operator, pathSigner, requireCredential, viewer, type Env } from "../credentials.ts";

export const evaluations = new Hono<Env>();

evaluations.post("/:id/versions/:version/evaluate", operator(), async (c) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const id = c.req.param("id");
  return answer(c, await aggregator(c.env, id).requestEvaluation(id, version), 201);
});

evaluations.put("/:id/versions/:version/evaluations/:client", requireCredential(["member"], EVALUATION_BYTES), async (c) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const signer = pathSigner(c);
  const id = c.req.param("id");
  return answer(c, await aggregator(c.env, id).reportEvaluation(id, version, signer.clientId, c.get("body")!));
});

/** One evaluation metric (?metric=, default loss) by version, the mean over the clients' reports, as an SVG chart. */
evaluations.get("/:id/evaluation.svg", viewer(), async (c) => {
  const id = c.req.param("id");
  const metric = c.req.query("metric") ?? "loss";
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(metric))
    return errorResponse(c, 400, "bad_request", "metric must be 1-64 letters, digits, '_', '.' or '-'");
  const listed = await aggregator(c.env, id).listEvaluations(id);
  if (!listed.ok) return answer(c, listed);
  const points = listed.value.flatMap((e) => (e.metrics[metric] === undefined ? [] : [[e.version, e.metrics[metric]] as const]));
  return svgResponse(
    linePlotSvg(
      [{ name: `${metric}, example-weighted over the clients' reports`, points: points.length ? points : [[0, 0]], color: "#d62728" }],
      {
        title: `${id}: federated evaluation`,
        xLabel: "version",
        yLabel: metric,
        integerX: true,
      },
    ),
  );
});

evaluations.get("/:id/evaluations", viewer(), async (c) => {
  const id = c.req.param("id");
  return answer(c, await aggregator(c.env, id).listEvaluations(id));
});

evaluations.get("/:id/versions/:version/evaluation", viewer(), async (c) => {
  const version = intParam(c, "version");
  if (version instanceof Response) return version;
  const id = c.req.param("id");
  return answer(c, await aggregator(c.env, id).getEvaluation(id, version));
});
