// A federation's rounds in workerd, for the robust, heterogeneous-rank and evaluation tests: honest clients' deltas that share a
// direction, every client's upload through the coordinator, and the round's result and version read back.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { decodeTensorFile, encodeTensorFile, type TensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { api, signed } from "./coordinator-api.ts";

export const version = async (id: string, v: number) =>
  decodeTensorFile(new Uint8Array(await (await api(`/federations/${id}/versions/${v}`)).arrayBuffer()), `v${v}`);

/**
 * Client i's honest delta: a direction every client shares (normal of std 0.02) plus its own noise (std
 * 0.005), as clients' updates on one task are.
 */
export function honestDelta(global: TensorFile, i: number): TensorMap {
  return new Map(
    [...global.tensors].map(([k, t], j) => {
      const common = normalSamples(seededUniform(7 + j), t.length, 0.02);
      const own = normalSamples(seededUniform(100 * i + j), t.length, 0.005);
      return [k, common.map((x, m) => x + own[m]!)];
    }),
  );
}

export const uploadBody = (global: TensorFile, delta: TensorMap, examples: number) =>
  encodeTensorFile(delta, global.shapes, { format: "pt", num_examples: String(examples), metrics: "{}" });

export interface RobustResult {
  rule: string;
  updates: number;
  normBound?: { bound: number; clipped: number; clippedClients: string[] };
  selected?: { count: number; clients: string[] };
  geometricMedian?: { iterations: number; objective: number };
}

/** Opens round 1, uploads each client's body (the last closes the round at quorum), reads the result and version 1. */
export async function firstRound(id: string, bodies: ReadonlyMap<string, Uint8Array>) {
  const opened = await api(`/federations/${id}/rounds`, { method: "POST" });
  expect(opened.status, await opened.clone().text()).toBe(201);
  for (const [c, body] of bodies) {
    const res = await signed(`/federations/${id}/rounds/1/updates/${c}`, c, {
      method: "PUT",
      body,
      headers: { "idempotency-key": `${c}-1` },
    });
    expect(res.status, await res.clone().text()).toBe(200);
  }
  const r = await (await api(`/federations/${id}/rounds/1`)).json<{ status: string; result: { robust: RobustResult } }>();
  expect(r.status).toBe("closed");
  return { robust: r.result.robust, after: await version(id, 1) };
}

/** The rows of buffered updates left in the federation's aggregator. */
export const keptRows = (id: string) =>
  runInDurableObject(
    env.AGGREGATOR.getByName(id),
    (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM blobs WHERE key LIKE 'updates/%'").one().n,
  );
