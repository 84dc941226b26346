// Failures a client retries later instead of failing its round: the other side was busy or down (429,
// 5xx) or could not be reached. Anything else (a refusal, a malformed answer) is final.

export class TransientError extends Error {
  override name = "TransientError";
}

/** An answer worth trying again later: the other side was busy (429) or failed (5xx). */
export const busy = (status: number): boolean => status === 429 || status >= 500;

/**
 * `fetch`, with a network failure as a TransientError and an answer that is not ok as an error naming `what`:
 * transient for 429 and 5xx.
 */
export async function request(what: string, url: string | URL, init?: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new TransientError(`${what}: ${(e as Error).message}`);
  }
  if (res.ok) return res;
  throw await failure(what, res);
}

/** The error for an answer that is not ok: transient for 429 and 5xx, final otherwise; it names `what` and quotes the answer. */
export async function failure(what: string, res: Response): Promise<Error> {
  const message = `${what}: ${res.status} ${(await res.text()).slice(0, 500)}`;
  return busy(res.status) ? new TransientError(message) : new Error(message);
}
