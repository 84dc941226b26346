// Bearer tokens (RFC 6750) as every fedflare service takes them: `Authorization: Bearer <token>`, one space,
// the token 1-512 visible ASCII characters. Stricter than RFC 6750's b64token so that a token with a space or
// a control character, or an absurdly long one, is refused by its shape before any comparison.

const BEARER = /^Bearer ([\x21-\x7e]{1,512})$/;

/** The Authorization header carrying `token`, or none without one. */
export function bearer(token: string | undefined): { authorization: string } | Record<string, never> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** The token of an `Authorization: Bearer <token>` header value, or null when the value has any other shape. */
export function bearerToken(header: string | undefined): string | null {
  return (header === undefined ? null : BEARER.exec(header)?.[1]) ?? null;
}
