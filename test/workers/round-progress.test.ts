// Clients' progress heartbeats in workerd (issue 22): a sampled client reports its steps done of those
// planned while it trains; the operator and the viewer see the latest per client in the open round, a
// member sees none of the others'; reports are bounded, signed by the client they name, and at most one
// every two seconds.
import { describe, expect, it } from "vitest";
import { federationConfig } from "../fixtures/federation.ts";
import { api, signed, viewerApi } from "./coordinator-api.ts";

const path = (round: number, client: string) => `/federations/prog/rounds/${round}/progress/${client}`;
const report = (client: string, body: unknown, round = 1, secretOf?: string) =>
  signed(path(round, client), client, {
    method: "PUT",
    body: new TextEncoder().encode(JSON.stringify(body)),
    ...(secretOf ? { secretOf } : {}),
  });
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

describe("progress heartbeats", () => {
  it("keeps each sampled client's latest report for the open round's viewers, bounded and rate-limited", async () => {
    const created = await api("/federations", {
      method: "POST",
      body: JSON.stringify(federationConfig("prog", { clients: ["c1", "c2", "c3", "c4"], clientsPerRound: 2, minClients: 1 })),
    });
    expect(created.status).toBe(201);
    const opened = await (await api("/federations/prog/rounds", { method: "POST" })).json<{ sampled: string[] }>();
    const [a, b] = opened.sampled as [string, string];
    const stranger = ["c1", "c2", "c3", "c4"].find((c) => !opened.sampled.includes(c))!;
    const ok = await report(a, { stepsDone: 3, steps: 12 });
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect(await ok.json()).toMatchObject({ stepsDone: 3, steps: 12, at: expect.any(Number) });
    expect((await report(b, { stepsDone: 0, steps: 12 })).status).toBe(200);
    const round = await (await viewerApi("/federations/prog/rounds/1")).json<{
      progress: Record<string, { stepsDone: number; steps: number }>;
    }>();
    expect(round.progress).toEqual({
      [a]: { stepsDone: 3, steps: 12, at: expect.any(Number) },
      [b]: { stepsDone: 0, steps: 12, at: expect.any(Number) },
    });
    // A member reads its round without the others' progress.
    const asMember = await (await signed("/federations/prog/rounds/1", a)).json<Record<string, unknown>>();
    expect(asMember.progress).toBeUndefined();
    // Refusals, each with its status and code.
    for (const [res, status, code] of [
      [await report(a, { stepsDone: 4, steps: 12 }), 429, "too_frequent"],
      [await report(b, { stepsDone: 13, steps: 12 }), 422, "metadata_invalid"],
      [await report(b, { stepsDone: 1, steps: 12, extra: 1 }), 422, "metadata_invalid"],
      [await report(b, { stepsDone: -1, steps: 12 }), 422, "metadata_invalid"],
      [await report(stranger, { stepsDone: 1, steps: 12 }), 403, "client_not_sampled"],
      [await report(b, { stepsDone: 1, steps: 12 }, 1, a), 401, "signature_invalid"],
      [await report(b, { stepsDone: 1, steps: 12, pad: "x".repeat(300) }), 413, "payload_too_large"],
      [await report(a, { stepsDone: 1, steps: 12 }, 7), 404, "round_not_found"],
    ] as const)
      expect([res.status, (await error(res)).code]).toEqual([status, code]);
    // Signed by one client for another's path: refused before the aggregator.
    const misaddressed = await signed(path(1, b), a, { method: "PUT", body: new TextEncoder().encode('{"stepsDone":1,"steps":2}') });
    expect(misaddressed.status).toBe(403);
    // Once the round is over, its heartbeats are refused.
    expect((await api("/federations/prog/rounds/1/fail", { method: "POST", body: '{"reason":"test"}' })).status).toBe(200);
    const late = await report(b, { stepsDone: 5, steps: 12 });
    expect([late.status, (await error(late)).code]).toEqual([409, "round_closed"]);
  });
});
