// Request bodies read with a size cap (before buffering all of a large body) and JSON parsed with a
// clear error.
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";

/** JSON bodies (federation configs) are small. */
export const MAX_JSON_BYTES = 1 << 20;
/** The coordinator's own cap on uploads; each federation sets a lower one (maxUploadBytes). */
export const MAX_UPLOAD_BYTES = 256 << 20;

export async function readBody(c: Context, limit: number): Promise<Uint8Array> {
  const declared = Number(c.req.header("content-length") ?? NaN);
  if (declared > limit) throw new HTTPException(413, { message: `the body is ${declared} bytes; at most ${limit} are accepted` });
  const reader = c.req.raw.body?.getReader();
  if (!reader) return new Uint8Array();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      throw new HTTPException(413, { message: `the body exceeds ${limit} bytes` });
    }
    parts.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function readJson(c: Context): Promise<unknown> {
  const bytes = await readBody(c, MAX_JSON_BYTES);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new HTTPException(400, { message: `the body is not valid JSON: ${(e as Error).message}` });
  }
}
