// Request bodies read with a size cap (before buffering all of a large body) and JSON parsed with a
// clear error.
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";

/** JSON bodies (federation configs) are small. */
export const MAX_JSON_BYTES = 1 << 20;

/** The 413 for a body over `limit`: its declared length, or null when it streamed past the limit. */
const tooLarge = (limit: number, declared: number | null) =>
  new HTTPException(413, {
    message: declared === null ? `the body exceeds ${limit} bytes` : `the body is ${declared} bytes; at most ${limit} are accepted`,
  });

/**
 * Middleware: a body over `limit` bytes is refused with 413 from its Content-Length, or as soon as it
 * streams past the limit, before a handler reads it (hono's bodyLimit, with this module's message).
 */
export function capBody(limit: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: limit,
    onError: (c) => {
      const declared = c.req.header("transfer-encoding") === undefined ? c.req.header("content-length") : undefined;
      throw tooLarge(limit, declared === undefined ? null : Number(declared));
    },
  });
}

/**
 * Reads a request's body, refusing it from its Content-Length or as soon as it streams past `limit`;
 * `onChunk` sees each part as it arrives.
 */
export function readBody(c: Context, limit: number, onChunk?: (chunk: Uint8Array) => Promise<void> | void): Promise<Uint8Array> {
  return readCapped(c.req.raw.body, Number(c.req.header("content-length") ?? NaN), limit, (declared) => tooLarge(limit, declared), onChunk);
}

/**
 * A body (a request's or a response's) read under `limit` bytes: refused from its declared length
 * before any of it is read (`tooLarge` gets that length), or as soon as it streams past the limit
 * (`tooLarge` gets null), the rest not read. With a declared length the bytes go straight into one buffer
 * of that size (an upload is held once, not as parts and a copy); without one the buffer doubles as needed.
 */
export async function readCapped(
  stream: ReadableStream<Uint8Array> | null,
  declared: number,
  limit: number,
  tooLarge: (declared: number | null) => Error,
  onChunk?: (chunk: Uint8Array) => Promise<void> | void,
): Promise<Uint8Array> {
  if (declared > limit) {
    await stream?.cancel();
    throw tooLarge(declared);
  }
  const reader = stream?.getReader();
  if (!reader) return new Uint8Array();
  let out = new Uint8Array(Number.isSafeInteger(declared) && declared >= 0 ? declared : Math.min(limit, 64 * 1024));
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.length > limit) {
      await reader.cancel();
      throw tooLarge(null);
    }
    if (onChunk) await onChunk(value);
    if (size + value.length > out.length) {
      const grown = new Uint8Array(Math.min(limit, Math.max(size + value.length, 2 * out.length)));
      grown.set(out.subarray(0, size));
      out = grown;
    }
    out.set(value, size);
    size += value.length;
  }
  // An exact-size buffer: a view into a larger one would carry the whole buffer through an RPC call.
  return size === out.length ? out : out.slice(0, size);
}

/** Deeper JSON is refused before parsing: configs nest a few levels, and a parser or validator may recurse. */
export const MAX_JSON_DEPTH = 32;

/** The deepest nesting of arrays and objects in JSON text (strings skipped), counted without parsing. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92) i++;
      else if (ch === 34) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 91 || ch === 123) deepest = Math.max(deepest, ++depth);
    else if (ch === 93 || ch === 125) depth--;
  }
  return deepest;
}

/** A body already read (bytes, or text as c.req.text() gives it), parsed as JSON: too deep or not JSON is a 400 saying which. */
export function parseJsonBody(body: Uint8Array | string): unknown {
  const text = typeof body === "string" ? body : new TextDecoder().decode(body);
  const depth = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH)
    throw new HTTPException(400, { message: `the body nests ${depth} levels deep; at most ${MAX_JSON_DEPTH} are accepted` });
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HTTPException(400, { message: `the body is not valid JSON: ${(e as Error).message}` });
  }
}
