// The coordinator worker: the HTTP gateway in front of the aggregator Durable Objects.
import { Hono } from "hono";
import { dashboardHtml } from "./dashboard.ts";
import { notFound, onError } from "../lib/http-errors.ts";
import { openapi } from "./openapi.ts";
import { federations } from "./routes/federations.ts";
import { evaluations } from "./routes/evaluations.ts";
import { progress } from "./routes/progress.ts";
import { secureAggregation } from "./routes/secure-aggregation.ts";
import { updates } from "./routes/updates.ts";
import { versions } from "./routes/versions.ts";

const app = new Hono<{ Bindings: Cloudflare.Env }>();

app.get("/", (c) => c.html(dashboardHtml()));
app.get("/health", (c) => c.json({ ok: true, service: "fedflare-coordinator" }));
app.get("/openapi.json", (c) => c.json(openapi()));
app.route("/federations", federations);
app.route("/federations", evaluations);
app.route("/federations", versions);
app.route("/federations", updates);
app.route("/federations", secureAggregation);
app.route("/federations", progress);

app.notFound(notFound);
app.onError(onError);

export default app;
// Wrangler finds a Durable Object class among the main module's exports.
export { Aggregator } from "../../durable-objects/aggregator/index.ts";
