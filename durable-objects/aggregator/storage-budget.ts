// A federation's object may store 10 GB (src/protocol/platform-limits.ts), and production refuses writes past it
// where local workerd does not. What grows with a federation is split in three shares, each checked at creation,
// with a tenth left for the rest: the kept versions (with the round's sum and a strategy's state), a round's kept updates
// (robust rules, a method's own rule) and the per-client detail of rounds (receipts and samples) and of federated
// evaluations (each client's report), which is dropped past `keepRoundDetail` rounds and versions asked. The rest
// (round rows, evaluations' folds, nonces, the registry) is small beside them.
import type { FederationConfig } from "../../src/protocol/federation.ts";
import { DURABLE_OBJECT_STORAGE_MAX_BYTES } from "../../src/protocol/platform-limits.ts";
import { AggregatorError } from "./errors.ts";

const SHARES = { versions: 0.4, kept: 0.4, detail: 0.1 } as const;
const budget = (share: keyof typeof SHARES) => Math.floor(DURABLE_OBJECT_STORAGE_MAX_BYTES * SHARES[share]);
const percent = (share: keyof typeof SHARES) => `${SHARES[share] * 100}% of an object's storage`;

/**
 * The most a round keeps of one client: its receipt (the federation's and client's ids of 64 characters, an
 * Idempotency-Key of 128 characters of up to 2 bytes each, the body's SHA-256 in hex, metrics of 2,048 characters,
 * five numbers, the ids again in the key's index, SQLite's row overhead and pages not filled) and its sample row.
 */
export const CLIENT_DETAIL_BYTES = 3072 + 512;
/** The most one client's evaluation report of a version keeps: two ids, at most 16 metrics of 64-character names, two numbers. */
export const EVALUATION_REPORT_BYTES = 2048;

/** The most one round and one evaluated version keep of their clients. */
const detailBytes = (config: FederationConfig) =>
  config.clientsPerRound * CLIENT_DETAIL_BYTES + config.clients.length * EVALUATION_REPORT_BYTES;

/** Version 0 and the latest keepVersions, the round's sum and up to four vectors of a strategy's state: the versions' share. */
export function checkVersionsKept(config: FederationConfig, floats: number): void {
  const bytes = (config.keepVersions + 6) * floats * 4;
  if (bytes > budget("versions"))
    throw new AggregatorError(
      "config_invalid",
      `keepVersions: ${config.keepVersions + 1} versions of ${floats * 4} bytes with the round's sum and the strategy's state ` +
        `are ${bytes} bytes, over the ${budget("versions")} (${percent("versions")}) they may hold; keep ` +
        `at most ${Math.max(1, Math.floor(budget("versions") / (floats * 4)) - 6)} versions`,
    );
}

/** A round that keeps every update until it closes (a robust or a method's own rule): the kept updates' share. */
export function checkKept(config: FederationConfig, floats: number, what: string): void {
  const kept = config.clientsPerRound * floats * 4;
  if (kept > budget("kept"))
    throw new AggregatorError(
      "config_invalid",
      `${what}: a round keeps every update until it closes: ${config.clientsPerRound} × ${floats * 4} bytes, over the ` +
        `${budget("kept")} bytes (${percent("kept")}) it may hold; sample fewer clients a round`,
    );
}

/**
 * The most rounds (and evaluated versions) whose per-client detail fits the detail's share: at least 17, at
 * 10,000 clients all sampled. Not capped at the federation's rounds, which count closed rounds only.
 */
function detailRoundsFitting(config: FederationConfig): number {
  return Math.floor(budget("detail") / detailBytes(config));
}

/** Rounds (and evaluated versions) whose per-client detail is kept: the config's keepRoundDetail, or as many as fit the detail's share. */
export function roundDetailKept(config: FederationConfig): number {
  return config.keepRoundDetail ?? detailRoundsFitting(config);
}

/** A keepRoundDetail the config names must fit the detail's share. */
export function checkRoundDetail(config: FederationConfig): void {
  const kept = config.keepRoundDetail;
  if (kept === undefined || kept * detailBytes(config) <= budget("detail")) return;
  throw new AggregatorError(
    "config_invalid",
    `keepRoundDetail: ${kept} rounds of ${config.clientsPerRound} clients' receipts (up to ${CLIENT_DETAIL_BYTES} bytes each) and ` +
      `evaluations of ${config.clients.length} clients' reports (up to ${EVALUATION_REPORT_BYTES} bytes each) are ` +
      `${kept * detailBytes(config)} bytes, over the ${budget("detail")} (${percent("detail")}) they may hold; keep at most ` +
      `${detailRoundsFitting(config)} rounds, or leave it out for as many as fit`,
  );
}
