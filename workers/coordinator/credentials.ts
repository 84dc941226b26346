// Who may call a route (docs/ARCHITECTURE.md, "Trust at the boundary"): the operator's bearer token for what changes
// a federation, the viewer's (or the operator's) for reading it, or a member client's HMAC signature for
// what a client needs. Checked as middleware, before a body is read and before any Durable Object is
// addressed; a coordinator without its secrets answers 503 naming the secret, never an open route.
import type { Context, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { timingSafeEqual } from "hono/utils/buffer";
import {
  assertBody,
  deriveClientSecret,
  HEADERS,
  parseSignedHeaders,
  SignatureError,
  verifySignature,
  type VerifiedRequest,
} from "../../src/protocol/signature.ts";
import { bearerToken } from "../../src/protocol/bearer.ts";
import { toHex } from "../../src/protocol/hex.ts";
import { intParam, registry } from "./aggregator.ts";
import { readBody } from "../lib/http-body.ts";
import { errorResponse } from "../lib/http-errors.ts";
import type { RegistryEntry } from "../../durable-objects/aggregator/registry.ts";

export type Role = "operator" | "viewer" | "member";

export type Env = {
  Bindings: Cloudflare.Env;
  Variables: { role: Role; signer?: VerifiedRequest; federation?: RegistryEntry; body?: Uint8Array; bodySha256?: string };
};

const SECRETS = { operator: "FEDFLARE_OPERATOR_TOKEN", viewer: "FEDFLARE_VIEWER_TOKEN", member: "FEDFLARE_MASTER_KEY" } as const;

function secret(c: Context<Env>, role: Role): string {
  const value = c.env[SECRETS[role]];
  if (typeof value !== "string" || value.length < 16)
    throw new HTTPException(503, {
      message:
        `the coordinator is not configured: set the secret ${SECRETS[role]} (at least 16 characters) ` +
        `with \`npx wrangler secret put ${SECRETS[role]}\``,
    });
  return value;
}

/** The role a bearer token grants among `allowed` (the operator's token reads as well), or null. */
async function tokenRole(c: Context<Env>, token: string, allowed: readonly Role[]): Promise<Role | null> {
  for (const role of ["operator", "viewer"] as const) {
    if (!allowed.includes(role) && !(role === "operator" && allowed.includes("viewer"))) continue;
    if (await timingSafeEqual(token, secret(c, role))) return role;
  }
  return null;
}

/**
 * The federation named by the path, from the registry (one object), before its own object is addressed:
 * an unknown id touches no Durable Object of its own. An isolate keeps the entries it read for KNOWN_MS;
 * one may go stale sooner when a federation is deleted and its id reused (another isolate's delete), so a
 * non-member is looked up again and the federation's object checks a reading client's membership itself.
 */
const known = new Map<string, { entry: RegistryEntry; at: number }>();
const KNOWN_CAP = 1024;
const KNOWN_MS = 60_000;

/** The path's federation: null when the route names none, "unknown" when the registry has no such id. */
async function federationOf(c: Context<Env>, fresh = false): Promise<RegistryEntry | null | "unknown"> {
  const id = c.req.param("id");
  if (id === undefined) return null;
  const cached = fresh ? undefined : known.get(id);
  if (cached && Date.now() - cached.at < KNOWN_MS) return cached.entry;
  const entry = await registry(c.env).lookup(id);
  known.delete(id);
  if (!entry) return "unknown";
  if (known.size >= KNOWN_CAP) known.delete(known.keys().next().value!);
  known.set(id, { entry, at: Date.now() });
  return entry;
}

/** Forgets a federation this isolate knew (it was deleted). */
export function forget(id: string): void {
  known.delete(id);
}

/** Reads the body under `limit`, hashing it as it streams in (DigestStream), so a signed body is read once. */
async function hashedBody(c: Context<Env>, limit: number): Promise<{ body: Uint8Array; sha256: string }> {
  const digest = new crypto.DigestStream("SHA-256");
  const writer = digest.getWriter();
  const body = await readBody(c, limit, (chunk) => writer.write(chunk));
  await writer.close();
  return { body, sha256: toHex(await digest.digest) };
}

/**
 * Middleware: the request must carry one of the `allowed` credentials. A member's request is checked from
 * its headers before the body is read: the HMAC over the path and the body's signed digest, then the path
 * (its client the signer, its round or version a number), then the signer's membership of the path's
 * federation; then the body, read under `bodyLimit` (the federation's maxUploadBytes when it is a
 * function), must have that digest, and is left in `c.var.body`.
 */
export function requireCredential(
  allowed: readonly Role[],
  bodyLimit: number | ((f: RegistryEntry) => number) = 0,
  opts: { unregistered?: boolean } = {},
): MiddlewareHandler<Env> {
  return async (c, next) => {
    const signedByClient = allowed.includes("member") && c.req.header(HEADERS.client) !== undefined;
    const token = signedByClient ? null : bearerToken(c.req.header("authorization"));
    if (token !== null) {
      const role = await tokenRole(c, token, allowed);
      if (!role) throw new HTTPException(401, { message: `the bearer token is not valid for this route (it needs ${describe(allowed)})` });
      c.set("role", role);
      const fed = await federationOf(c);
      if (fed === "unknown" && !opts.unregistered) return unknown(c);
      if (fed && fed !== "unknown") c.set("federation", fed);
      return next();
    }
    if (!allowed.includes("member") || (allowed.length > 1 && !signedByClient))
      throw new HTTPException(401, { message: `this route needs ${describe(allowed)}` });
    const masterKey = secret(c, "member");
    let headers: ReturnType<typeof parseSignedHeaders>;
    try {
      headers = parseSignedHeaders(c.req.raw.headers);
    } catch (e) {
      if (e instanceof SignatureError) return errorResponse(c, 401, e.code, e.message);
      throw e;
    }
    const url = new URL(c.req.url);
    try {
      // The signature, over the path and the body's signed digest, first: a request without the client's secret
      // learns nothing of which federations and members exist, touches no object and has no byte of its body read.
      c.set(
        "signer",
        await verifySignature(await deriveClientSecret(masterKey, headers.clientId), headers, c.req.method, url.pathname + url.search),
      );
    } catch (e) {
      if (e instanceof SignatureError) return errorResponse(c, 401, e.code, e.message);
      throw e;
    }
    // A client speaks only for itself, and a round or version is a number: both refused before the body is read.
    const client = c.req.param("client");
    if (client !== undefined && client !== headers.clientId)
      throw new HTTPException(403, { message: `signed by "${headers.clientId}" but the path names "${client}"` });
    for (const name of ["round", "version"])
      if (c.req.param(name) !== undefined) {
        const bad = intParam(c, name);
        if (bad instanceof Response) return bad;
      }
    let fed = await federationOf(c);
    // A cached entry may be a deleted federation's whose id was reused: a non-member is looked up again.
    if (fed !== null && fed !== "unknown" && !fed.clients.includes(headers.clientId)) fed = await federationOf(c, true);
    if (fed === "unknown") return unknown(c);
    if (!fed) throw new HTTPException(403, { message: "client signatures are accepted only on a federation's routes" });
    if (!fed.clients.includes(headers.clientId))
      throw new HTTPException(403, { message: `client "${headers.clientId}" is not a member of federation "${fed.id}"` });
    let body: Uint8Array;
    let sha256: string;
    try {
      ({ body, sha256 } = await hashedBody(c, typeof bodyLimit === "function" ? bodyLimit(fed) : bodyLimit));
      assertBody(headers, sha256);
    } catch (e) {
      if (e instanceof SignatureError) return errorResponse(c, 400, e.code, e.message);
      throw e;
    }
    c.set("role", "member");
    c.set("federation", fed);
    c.set("body", body);
    c.set("bodySha256", sha256);
    return next();
  };
}

const unknown = (c: Context<Env>) => errorResponse(c, 404, "federation_not_found", `no federation "${c.req.param("id")}"`);

function describe(allowed: readonly Role[]): string {
  const names = {
    operator: "the operator's token (Authorization: Bearer $FEDFLARE_OPERATOR_TOKEN)",
    viewer: "the viewer's or the operator's token",
    member: "a member client's signature",
  };
  return allowed.map((r) => names[r]).join(" or ");
}

/** The client that signed the request, when a client did (the object checks its membership again). */
export const signerOf = (c: Context<Env>): string | undefined => (c.get("role") === "member" ? c.get("signer")!.clientId : undefined);

/** The signed request's signer, the client the path names (requireCredential refused any other). */
export const pathSigner = (c: Context<Env>): VerifiedRequest => c.get("signer")!;

export const operator = () => requireCredential(["operator"]);
/** The operator, on a federation the registry may have lost (a delete cut off half-way is finished by another). */
export const operatorOnAnyId = () => requireCredential(["operator"], 0, { unregistered: true });
export const viewer = () => requireCredential(["viewer"]);
/** Reads a federation's client needs too: its rounds and versions. */
export const reader = () => requireCredential(["viewer", "member"]);
