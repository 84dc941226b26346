// A client worker: a data owner's deployment. It holds its partition and the base model (R2), signs
// with its own secret, and trains the rounds it is given (pushed to POST /tasks, or pulled on its cron)
// through its trainer Durable Object.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { notFound, onError } from "../coordinator/errors.ts";
import { readJson } from "../coordinator/body.ts";
import type { ClientEnv } from "./env.ts";
import { coordinatorFetch } from "./sources.ts";

const app = new Hono<{ Bindings: ClientEnv }>();

app.get("/health", (c) => c.json({ ok: true, service: "fedflare-client", client: c.env.CLIENT_ID }));

/** A task: {"federationId": "...", "round": N}. */
app.post("/tasks", async (c) => {
  const body = (await readJson(c)) as { federationId?: unknown; round?: unknown } | null;
  if (typeof body?.federationId !== "string" || !Number.isInteger(body.round) || (body.round as number) < 1)
    throw new HTTPException(400, { message: 'a task is {"federationId": string, "round": positive integer}' });
  return c.json(await c.env.TRAINER.getByName(body.federationId).start(body.federationId, body.round as number), 202);
});

const params = (c: { req: { param: (k: string) => string | undefined } }) => ({ fed: c.req.param("federation") ?? "", round: Number(c.req.param("round")) });

app.get("/tasks/:federation/:round", async (c) => {
  const { fed, round } = params(c);
  const job = await c.env.TRAINER.getByName(fed).job(fed, round);
  if (!job) throw new HTTPException(404, { message: `no task for round ${round} of "${fed}"` });
  return c.json(job);
});

app.get("/tasks/:federation/:round/delta", async (c) => {
  const { fed, round } = params(c);
  const delta = await c.env.TRAINER.getByName(fed).delta(fed, round);
  if (!delta) throw new HTTPException(404, { message: `no uploaded delta for round ${round} of "${fed}"` });
  return new Response(delta, { headers: { "content-type": "application/octet-stream" } });
});

app.notFound(notFound);
app.onError(onError);

/** Pull: on its cron, the client asks each of its federations for an open round it was sampled for. */
async function pullTasks(env: ClientEnv): Promise<void> {
  for (const fed of (env.FEDERATIONS ?? "").split(",").map((f) => f.trim()).filter(Boolean)) {
    const res = await coordinatorFetch(env, `/federations/${encodeURIComponent(fed)}`);
    if (!res.ok) throw new Error(`reading federation "${fed}": ${res.status} ${await res.text()}`);
    const { openRound } = (await res.json()) as { openRound: number | null };
    if (openRound === null) continue;
    const round = (await (await coordinatorFetch(env, `/federations/${encodeURIComponent(fed)}/rounds/${openRound}`)).json()) as { sampled: string[] };
    if (round.sampled.includes(env.CLIENT_ID)) await env.TRAINER.getByName(fed).start(fed, openRound);
  }
}

export default {
  fetch: app.fetch,
  scheduled: (_controller: ScheduledController, env: ClientEnv, ctx: ExecutionContext) => ctx.waitUntil(pullTasks(env)),
} satisfies ExportedHandler<ClientEnv>;
export { ClientTrainer } from "./trainer.ts";
