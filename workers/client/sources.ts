// Where a client's model, data and rounds come from: an R2 bucket holding the Hugging Face folder and the
// partition, an inference endpoint where configured, and the coordinator, read with signed requests.
import { HTTPException } from "hono/http-exception";
import { parseJsonl, type Example } from "../../src/data/jsonl.ts";
import type { ModelSource } from "../../src/engine/model-files.ts";
import type { ClientMethod, MethodConfig, Placement } from "../../src/fl/methods/method.ts";
import { CoordinatorAnswerError, type MemberRound, parseMemberRound } from "../../src/protocol/member-views.ts";
import { signRequest } from "../../src/protocol/signature.ts";
import type { ClientEnv } from "./env.ts";
import { TransientError } from "../../src/fl/client/transient.ts";
import { readCapped } from "../lib/http-body.ts";

export function r2ModelSource(env: ClientEnv): ModelSource {
  const prefix = env.MODEL_PREFIX ?? "";
  return {
    location: `r2://MODEL/${prefix}`,
    async read(name) {
      const obj = await env.MODEL.get(prefix + name);
      return obj ? new Uint8Array(await obj.arrayBuffer()) : null;
    },
    // R2 range reads: a client reads a checkpoint's header, then only the tensors of the layers it holds.
    async readRange(name, offset, length) {
      const obj = await env.MODEL.get(prefix + name, { range: { offset, length } });
      return obj ? { bytes: new Uint8Array(await obj.arrayBuffer()), size: obj.size } : null;
    },
  };
}

export async function loadPartition(env: ClientEnv): Promise<Example[]> {
  const key = env.DATA_KEY ?? "partition.jsonl";
  const obj = await env.DATA.get(key);
  if (!obj) throw new Error(`the DATA bucket has no ${key}: upload this client's partition there`);
  return parseJsonl(await obj.text(), `r2://DATA/${key}`);
}

/** This client's held-out split (EVAL_KEY), its first MAX_EVAL_EXAMPLES examples; null when the bucket has none. */
export async function loadHeldOut(env: ClientEnv): Promise<Example[] | null> {
  const key = env.EVAL_KEY ?? "heldout.jsonl";
  const obj = await env.DATA.get(key);
  if (!obj) return null;
  const cap = Number(env.MAX_EVAL_EXAMPLES ?? 256);
  return parseJsonl(await obj.text(), `r2://DATA/${key}`).slice(0, Number.isInteger(cap) && cap > 0 ? cap : 256);
}

/** Where this deployment runs a method's forward passes, from the endpoints it was given (TRUNK_URL, OPENAI_BASE_URL). */
export function placementOf(env: ClientEnv, side: ClientMethod<MethodConfig>, method: MethodConfig): Placement {
  return side.placement(method, { endpoint: env.TRUNK_URL !== undefined, api: env.OPENAI_BASE_URL !== undefined });
}

/**
 * A request to the coordinator (over the service binding when there is one), signed with this client's
 * secret over the method, the path with its query string (what the coordinator sees) and the body. Each
 * call signs anew: a nonce is good for one request.
 */
export async function coordinatorFetch(
  env: ClientEnv,
  path: string,
  init: { method?: "GET" | "PUT"; body?: Uint8Array; headers?: Record<string, string> } = {},
): Promise<Response> {
  if (!env.CLIENT_SECRET)
    throw new Error(
      "this client has no CLIENT_SECRET: set it with `wrangler secret put CLIENT_SECRET` (the operator gives it: " +
        "`fedflare client-secret --client <id>`)",
    );
  const method = init.method ?? "GET";
  const signed = await signRequest(env.CLIENT_SECRET, env.CLIENT_ID, method, path, init.body);
  const request = { method, headers: { ...init.headers, ...signed }, ...(init.body ? { body: init.body } : {}) };
  if (!env.COORDINATOR && !env.COORDINATOR_URL) throw new Error("set COORDINATOR (a service binding) or COORDINATOR_URL");
  try {
    return await (env.COORDINATOR
      ? env.COORDINATOR.fetch(`https://coordinator${path}`, request)
      : fetch(new URL(path, env.COORDINATOR_URL), request));
  } catch (e) {
    throw new TransientError(`the coordinator could not be reached: ${(e as Error).message}`);
  }
}

/** What a client reads of a round (GET /federations/{id}/rounds/{n}): its state, who was sampled, and the task. */
export type RoundInfo = MemberRound;

/** A round as the coordinator reports it; its refusal is passed on (404 as 404, anything else as 502). */
export async function readRound(env: ClientEnv, federationId: string, round: number): Promise<RoundInfo> {
  const res = await coordinatorFetch(env, `/federations/${encodeURIComponent(federationId)}/rounds/${round}`);
  if (!res.ok)
    throw new HTTPException(res.status === 404 ? 404 : 502, {
      message: `the coordinator answered ${res.status} for round ${round} of "${federationId}": ${(await res.text()).slice(0, 500)}`,
    });
  return coordinatorJson(res, `round ${round} of "${federationId}"`, parseMemberRound);
}

/**
 * A coordinator's JSON answer about `what`, parsed by `parse`: one that is not JSON is a 502; one out of shape
 * is a 502 naming the field, caused by the parse's CoordinatorAnswerError (a retry would read the same).
 */
export async function coordinatorJson<T>(res: Response, what: string, parse: (json: unknown, what: string) => T): Promise<T> {
  let json: unknown;
  try {
    json = await res.json();
  } catch {
    throw new HTTPException(502, { message: `the coordinator's ${what} is not JSON` });
  }
  try {
    return parse(json, what);
  } catch (e) {
    if (e instanceof CoordinatorAnswerError) throw new HTTPException(502, { message: e.message, cause: e });
    throw e;
  }
}

/** A response's body, refused past `cap` bytes as it is read; `tooLarge` words the refusal from the size seen. */
export function readResponse(res: Response, cap: number, tooLarge: (size: string) => string): Promise<Uint8Array> {
  return readCapped(
    res.body,
    Number(res.headers.get("content-length") ?? NaN),
    cap,
    (declared) => new Error(tooLarge(declared === null ? `more than ${cap} bytes` : `${declared} bytes`)),
  );
}
