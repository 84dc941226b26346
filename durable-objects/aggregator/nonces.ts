// Replay protection for signed requests that change a federation (uploads, SecAgg+ messages): each
// client's nonce is spent once, and kept as long as a signed request stays acceptable, and a little more.
import type { SqlExec } from "../shared/blobs.ts";
import { AggregatorError } from "./errors.ts";

const NONCE_TTL_MS = 15 * 60 * 1000;

/** Refuses a nonce the client already spent. */
export function assertFreshNonce(sql: SqlExec, clientId: string, nonce: string): void {
  if (sql.exec("SELECT 1 FROM nonces WHERE client_id = ? AND nonce = ?", clientId, nonce).toArray().length)
    throw new AggregatorError("nonce_reused", `nonce ${nonce} was already used by "${clientId}": sign each request anew`);
}

/** Spends a nonce (inside the transaction that accepts its request) and forgets expired ones. */
export function spendNonce(sql: SqlExec, clientId: string, nonce: string, now: number): void {
  sql.exec("INSERT INTO nonces (client_id, nonce, expires_at) VALUES (?, ?, ?)", clientId, nonce, now + NONCE_TTL_MS);
  sql.exec("DELETE FROM nonces WHERE expires_at < ?", now);
}
