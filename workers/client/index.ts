// A client worker: a data owner's deployment. It holds its partition and the base model (R2), signs
// with its own secret, and trains the rounds it is given (pushed to POST /tasks by the operator or its
// owner, or pulled on its cron) through its trainer Durable Object. No route hands out what it trained.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { notFound, onError } from "../lib/http-errors.ts";
import { clientAuth, MAX_REQUEST_BYTES, type ClientApp } from "./auth.ts";
import type { ClientEnv } from "./env.ts";
import { parseMemberFederation } from "../../src/protocol/member-views.ts";
import { federationRefusal, listedFederations, roundRefusal } from "./policy.ts";
import { coordinatorFetch, coordinatorJson, readRound } from "./sources.ts";
import { capBody, parseJsonBody } from "../lib/http-body.ts";

const app = new Hono<ClientApp>();

// Open, and says nothing about this deployment.
app.get("/health", (c) => c.json({ ok: true, service: "fedflare-client" }));

app.use("*", capBody(MAX_REQUEST_BYTES), clientAuth);

/**
 * A task: {"federationId": "...", "round": N}, for a listed federation's open round that sampled this client,
 * within the owner's limits.
 */
app.post("/tasks", async (c) => {
  const body = parseTask(c.var.body);
  const listed = federationRefusal(c.env, body.federationId);
  if (listed) throw new HTTPException(listed.status, { message: listed.message });
  const round = await readRound(c.env, body.federationId, body.round);
  const refusal = roundRefusal(c.env, body.federationId, body.round, round);
  if (refusal) throw new HTTPException(refusal.status, { message: refusal.message });
  return c.json(await c.env.TRAINER.getByName(body.federationId).start(body.federationId, body.round, round.task.createdAt), 202);
});

/** The job's state, and its upload's size, SHA-256 and declared metrics once made; never the upload itself. */
app.get("/tasks/:federation/:round", async (c) => {
  const fed = c.req.param("federation");
  // Only a listed federation's trainer object is addressed, and only for a round number.
  const listed = federationRefusal(c.env, fed);
  if (listed) throw new HTTPException(listed.status, { message: listed.message });
  if (!/^[1-9]\d{0,8}$/.test(c.req.param("round")))
    throw new HTTPException(400, { message: `a round is a positive integer, got "${c.req.param("round").slice(0, 20)}"` });
  const round = Number(c.req.param("round"));
  const job = await c.env.TRAINER.getByName(fed).job(fed, round);
  if (!job) throw new HTTPException(404, { message: `no task for round ${round} of "${fed}"` });
  return c.json(job);
});

app.notFound(notFound);
app.onError(onError);

function parseTask(bytes: Uint8Array): { federationId: string; round: number } {
  const body = parseJsonBody(bytes) as { federationId?: unknown; round?: unknown } | null;
  if (typeof body?.federationId !== "string" || !Number.isInteger(body.round) || (body.round as number) < 1)
    throw new HTTPException(400, { message: 'a task is {"federationId": string, "round": positive integer}' });
  return { federationId: body.federationId, round: body.round as number };
}

/** What a member reads of its federation: the open round, and the versions it is asked to evaluate. */
async function memberView(env: ClientEnv, fed: string) {
  const res = await coordinatorFetch(env, `/federations/${encodeURIComponent(fed)}`);
  if (!res.ok) throw new Error(`reading federation "${fed}": ${res.status} ${await res.text()}`);
  return coordinatorJson(res, `federation "${fed}"`, parseMemberFederation);
}

/** Scores and reports the versions the federation asks this client to evaluate; returns those reported. */
async function evaluatePending(env: ClientEnv, fed: string, view: Awaited<ReturnType<typeof memberView>>): Promise<number[]> {
  if (!view.evaluate?.length || !view.evaluation) return [];
  return env.TRAINER.getByName(fed).evaluate(fed, view.evaluate, view.evaluation);
}

/**
 * Federated evaluation now, rather than on the cron: {"federationId": "..."}, a listed federation; answers the
 * versions reported.
 */
app.post("/evaluations", async (c) => {
  const body = parseJsonBody(c.var.body) as { federationId?: unknown } | null;
  if (typeof body?.federationId !== "string")
    throw new HTTPException(400, { message: 'an evaluation request is {"federationId": string}' });
  const refusal = federationRefusal(c.env, body.federationId);
  if (refusal) throw new HTTPException(refusal.status, { message: refusal.message });
  return c.json({ reported: await evaluatePending(c.env, body.federationId, await memberView(c.env, body.federationId)) });
});

/** Logs a failure of work on the cron, which has no one to answer. */
const logged = (what: string) => (e: unknown) => console.error(`${what}: ${e instanceof Error ? e.message : String(e)}`);

/** Pull: on its cron, the client asks each of its federations for an open round it was sampled for. */
async function pullTasks(env: ClientEnv): Promise<void> {
  // One federation whose coordinator fails or answers out of shape does not keep the others' tasks back.
  for (const fed of listedFederations(env)) await pullTask(env, fed).catch(logged(`pulling the task of "${fed}"`));
}

async function pullTask(env: ClientEnv, fed: string): Promise<void> {
  const view = await memberView(env, fed);
  // Versions the operator asked the clients to evaluate: a failure here does not keep the round's task back.
  await evaluatePending(env, fed, view).catch(logged(`evaluating versions of "${fed}"`));
  const { openRound } = view;
  if (openRound === null) return;
  // The trainer checks the round and the owner's limits when it starts; a refused job records why.
  const round = await readRound(env, fed, openRound);
  if (round.sampled.includes(env.CLIENT_ID)) await env.TRAINER.getByName(fed).start(fed, openRound, round.task.createdAt);
}

export default {
  fetch: app.fetch,
  scheduled: (_controller: ScheduledController, env: ClientEnv, ctx: ExecutionContext) => ctx.waitUntil(pullTasks(env)),
} satisfies ExportedHandler<ClientEnv>;
export { ClientTrainer } from "./trainer.ts";
export { Collusion } from "./collusion.ts";
