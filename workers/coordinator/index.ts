// The coordinator worker: the HTTP gateway in front of the aggregator Durable Object.
import { Hono } from "hono";
import { notFound, onError } from "./errors.ts";

const app = new Hono<{ Bindings: Cloudflare.Env }>();

app.get("/health", (c) => c.json({ ok: true, service: "fedflare-coordinator" }));

app.notFound(notFound);
app.onError(onError);

export default app;
// Wrangler finds a Durable Object class among the main module's exports.
export { Aggregator } from "../../durable-objects/aggregator/index.ts";
