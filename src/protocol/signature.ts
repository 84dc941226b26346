// Signed client requests: HMAC-SHA256 (WebCrypto, so the same code signs in a Worker and verifies in
// the Durable Object) over the method, path, signer, timestamp, nonce and the SHA-256 of the body. The
// body's SHA-256 also travels in a header, as AWS Signature V4's x-amz-content-sha256 does, so a receiver
// checks the signature before it reads the body, then checks the body against that digest as it streams
// in. Each client's secret is derived from the operator's master key, so the server stores no client secrets.
import { ProtocolError } from "./errors.ts";
import { sha256Hex, toHex } from "./hex.ts";

export const HEADERS = {
  client: "x-fedflare-client",
  timestamp: "x-fedflare-timestamp",
  nonce: "x-fedflare-nonce",
  signature: "x-fedflare-signature",
  contentSha256: "x-fedflare-content-sha256",
} as const;

/** Signed requests older or newer than this are refused (clock skew plus transit). */
export const MAX_SKEW_SECONDS = 300;

export type SignatureErrorCode = "signature_missing" | "signature_expired" | "signature_invalid" | "body_mismatch";

export class SignatureError extends ProtocolError<SignatureErrorCode> {}

const enc = new TextEncoder();

function fromHex(s: string): Uint8Array<ArrayBuffer> | null {
  if (!/^([0-9a-f]{2})+$/.test(s)) return null;
  return Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
}

async function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
}

/** WebCrypto's typings want an ArrayBuffer-backed view; a copy gives one whatever the input's buffer. */
const own = (bytes: Uint8Array): Uint8Array<ArrayBuffer> => Uint8Array.from(bytes);

/**
 * The identity the operator signs as (for what only the operator may do, such as supplying an
 * offsite-tuning federation's initial adapter); no client id can take it, as ids start with a letter or digit.
 */
export const OPERATOR_ID = "_operator";

/** The client's secret: HMAC(master key, "fedflare-client:" + client id), hex. */
export async function deriveClientSecret(masterKey: string, clientId: string): Promise<string> {
  return toHex(await crypto.subtle.sign("HMAC", await hmacKey(masterKey), enc.encode(`fedflare-client:${clientId}`)));
}

/**
 * What a signature covers. The signer's id is in it: a client's secret signs both its own requests and,
 * in the operator's hands, the tasks sent to it (as OPERATOR_ID), so one must never verify as the other.
 */
function canonicalOf(
  method: string,
  path: string,
  signer: string,
  timestamp: string,
  nonce: string,
  bodySha256: string,
): Uint8Array<ArrayBuffer> {
  return own(enc.encode(`${method.toUpperCase()}\n${path}\n${signer}\n${timestamp}\n${nonce}\n${bodySha256}`));
}

export interface SignedHeaders {
  [HEADERS.client]: string;
  [HEADERS.timestamp]: string;
  [HEADERS.nonce]: string;
  [HEADERS.signature]: string;
  [HEADERS.contentSha256]: string;
}

/** Signs a request: `path` is what the receiver sees (pathname and query string); GETs sign an empty body. */
export async function signRequest(
  secret: string,
  clientId: string,
  method: string,
  path: string,
  body: Uint8Array = new Uint8Array(),
  now = Date.now(),
): Promise<SignedHeaders> {
  const timestamp = String(Math.floor(now / 1000));
  const nonce = toHex(crypto.getRandomValues(new Uint8Array(16)));
  const digest = await bodyDigest(body);
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), canonicalOf(method, path, clientId, timestamp, nonce, digest));
  return {
    [HEADERS.client]: clientId,
    [HEADERS.timestamp]: timestamp,
    [HEADERS.nonce]: nonce,
    [HEADERS.signature]: toHex(mac),
    [HEADERS.contentSha256]: digest,
  };
}

export interface VerifiedRequest {
  clientId: string;
  nonce: string;
  timestamp: number;
}

/** Signed headers whose syntax and timestamp were checked, before the body is read. */
export interface SignedHeaderValues extends VerifiedRequest {
  signature: Uint8Array<ArrayBuffer>;
  timestampText: string;
  /** The body's hex SHA-256 as signed: the body read later must have it. */
  contentSha256: string;
}

/** Client ids: a letter or digit, then letters, digits, '.', '_' or '-' (64 at most); the operator signs as OPERATOR_ID. */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Checks the signed headers' presence and syntax and the timestamp window, without the body or any
 * secret, so a request that cannot be valid is refused before its body is read.
 */
export function parseSignedHeaders(headers: Headers, now = Date.now()): SignedHeaderValues {
  const get = (h: string) => headers.get(h);
  const [clientId, timestamp, nonce, signature, contentSha256] = [
    get(HEADERS.client),
    get(HEADERS.timestamp),
    get(HEADERS.nonce),
    get(HEADERS.signature),
    get(HEADERS.contentSha256),
  ];
  if (!clientId || !timestamp || !nonce || !signature || !contentSha256)
    throw new SignatureError("signature_missing", `signed requests carry ${Object.values(HEADERS).join(", ")}`);
  if (clientId !== OPERATOR_ID && !CLIENT_ID_PATTERN.test(clientId))
    throw new SignatureError("signature_invalid", `the client id must match ${CLIENT_ID_PATTERN.source}`);
  const ts = Number(timestamp);
  if (!/^\d{1,12}$/.test(timestamp) || Math.abs(now / 1000 - ts) > MAX_SKEW_SECONDS)
    throw new SignatureError(
      "signature_expired",
      `timestamp ${timestamp.slice(0, 20)} is more than ${MAX_SKEW_SECONDS} s from the server's clock (${Math.floor(now / 1000)})`,
    );
  if (!/^[0-9a-f]{16,64}$/.test(nonce)) throw new SignatureError("signature_invalid", "the nonce must be 16-64 hex digits");
  const mac = signature.length === 64 ? fromHex(signature) : null;
  if (!mac) throw new SignatureError("signature_invalid", "the signature must be 64 hex digits (HMAC-SHA256)");
  if (!/^[0-9a-f]{64}$/.test(contentSha256))
    throw new SignatureError("signature_invalid", `${HEADERS.contentSha256} must be the body's SHA-256 in 64 hex digits`);
  return { clientId, nonce, timestamp: ts, timestampText: timestamp, signature: mac, contentSha256 };
}

/** Hex SHA-256 of a body, as the signature covers it. */
export const bodyDigest: (body: Uint8Array) => Promise<string> = sha256Hex;

/**
 * Checks parsed headers' HMAC under `secret` over the method, the path (with its query string) and the
 * body's SHA-256 as the headers carry it, before the body is read; `assertBody` then checks the body.
 * Replay of a nonce is the caller's to refuse.
 */
export async function verifySignature(secret: string, h: SignedHeaderValues, method: string, path: string): Promise<VerifiedRequest> {
  const key = await hmacKey(secret);
  // crypto.subtle.verify compares in constant time.
  if (
    !(await crypto.subtle.verify(
      "HMAC",
      key,
      h.signature,
      canonicalOf(method, path, h.clientId, h.timestampText, h.nonce, h.contentSha256),
    ))
  )
    throw new SignatureError(
      "signature_invalid",
      `the signature does not match the request for client "${h.clientId}": check its secret, and sign the exact body and path`,
    );
  return { clientId: h.clientId, nonce: h.nonce, timestamp: h.timestamp };
}

/** Refuses a body whose SHA-256 (hashed as it streamed in) is not the one the verified headers carry. */
export function assertBody(h: SignedHeaderValues, bodySha256: string): void {
  if (bodySha256 !== h.contentSha256)
    throw new SignatureError(
      "body_mismatch",
      `the body's SHA-256 is ${bodySha256}, not the signed ${h.contentSha256}: it changed on the way`,
    );
}

/** Checks the headers' signature over the request with the secret derived for the signer; replay is the caller's to refuse. */
export async function verifyRequest(
  masterKey: string,
  headers: Headers,
  method: string,
  path: string,
  body: Uint8Array,
  now = Date.now(),
): Promise<VerifiedRequest> {
  const h = parseSignedHeaders(headers, now);
  const verified = await verifySignature(await deriveClientSecret(masterKey, h.clientId), h, method, path);
  assertBody(h, await bodyDigest(body));
  return verified;
}
