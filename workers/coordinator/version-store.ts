// Versions kept in R2 once read (issue 20): a version of a live federation never changes, so its bytes are
// written once, under versions/<id>/<createdAt>/<version>, the federation's creation time keeping a later
// federation of the same id apart, and later reads are answered from R2 without a request to the
// aggregator. Reads pass the same credentials first (a member's signature, the viewer's token). Without
// the VERSIONS binding every read goes to the aggregator, as before.
import type { RegistryEntry } from "../../durable-objects/aggregator/registry.ts";

/** Where a federation's version is kept, or null when it cannot be (no bucket, or an entry older than createdAt). */
export function versionKey(env: Cloudflare.Env, fed: RegistryEntry, version: number): string | null {
  return env.VERSIONS && fed.createdAt !== undefined ? `versions/${fed.id}/${fed.createdAt}/${version}` : null;
}

/**
 * The aggregator's stream of a version, passed on to the reader while a copy is written to R2 under `key`
 * after the answer (`waitUntil`); a copy that fails to be written is only a later read's miss.
 */
export function keepVersion(
  env: Cloudflare.Env,
  ctx: { waitUntil(promise: Promise<unknown>): void },
  key: string,
  stream: ReadableStream<Uint8Array>,
  bytes: number,
): ReadableStream<Uint8Array> {
  const [answer, copy] = stream.tee();
  const sized = new FixedLengthStream(bytes);
  ctx.waitUntil(Promise.all([copy.pipeTo(sized.writable), env.VERSIONS!.put(key, sized.readable)]).catch(failedToKeep(key)));
  return answer;
}

/** Bytes already whole in memory (a method's view of a version) kept in R2 under `key` after the answer, as keepVersion keeps a stream. */
export function keepBytes(env: Cloudflare.Env, ctx: { waitUntil(promise: Promise<unknown>): void }, key: string, bytes: Uint8Array): void {
  ctx.waitUntil(env.VERSIONS!.put(key, bytes).catch(failedToKeep(key)));
}

/** A copy that fails to be written is only a later read's miss: logged, not thrown. */
const failedToKeep = (key: string) => (e: unknown) =>
  console.error(`keeping ${key} in R2 failed: ${e instanceof Error ? e.message : String(e)}`);

/** Deletes every version kept for federation `id`, a listing page at a time (the federation was deleted). */
export async function dropVersions(env: Cloudflare.Env, id: string): Promise<void> {
  if (!env.VERSIONS) return;
  for (let cursor: string | undefined; ; ) {
    const page = await env.VERSIONS.list({ prefix: `versions/${id}/`, ...(cursor ? { cursor } : {}) });
    if (page.objects.length) await env.VERSIONS.delete(page.objects.map((o) => o.key));
    if (!page.truncated) return;
    cursor = page.cursor;
  }
}
