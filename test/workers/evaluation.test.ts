// Federated evaluation in workerd (issue 22): the operator asks the clients to evaluate a version (or
// evaluateEvery asks as versions are made); each member sees the versions it is asked for, reports its
// examples and metrics once, and the folded metric equals the example-weighted mean of the reports
// computed here in float64; reports are bounded, signed by the client they name, and asked for.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { federationConfig } from "../fixtures/federation.ts";
import { api, signed, viewerApi } from "./coordinator-api.ts";
import { honestDelta, uploadBody, version } from "./federation-rounds.ts";

const report = (fed: string, version: number, client: string, body: unknown) =>
  signed(`/federations/${fed}/versions/${version}/evaluations/${client}`, client, {
    method: "PUT",
    body: new TextEncoder().encode(JSON.stringify(body)),
  });
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const asked = async (fed: string, client: string) =>
  (await (await signed(`/federations/${fed}`, client)).json<{ evaluate: number[] }>()).evaluate;

describe("federated evaluation", () => {
  it("folds the clients' reports of a version example-weighted, as the float64 mean of them", async () => {
    const clients = ["c1", "c2", "c3", "c4"];
    expect((await api("/federations", { method: "POST", body: JSON.stringify(federationConfig("evals", { clients })) })).status).toBe(201);
    // Nothing asked yet: a report is refused, and no client is asked anything.
    const early = await report("evals", 0, "c1", { numExamples: 5, metrics: { loss: 1 } });
    expect([early.status, (await error(early)).code]).toEqual([409, "evaluation_not_requested"]);
    expect(await asked("evals", "c1")).toEqual([]);
    expect((await api("/federations/evals/versions/0/evaluate", { method: "POST" })).status).toBe(201);
    expect(await asked("evals", "c1")).toEqual([0]);
    const reports = [
      ["c1", 30, { loss: 2.5, accuracy: 0.6 }],
      ["c2", 10, { loss: 1.25, accuracy: 0.9 }],
      ["c3", 45, { loss: 3.125 }],
    ] as const;
    for (const [client, numExamples, metrics] of reports) {
      const res = await report("evals", 0, client, { numExamples, metrics });
      expect(res.status, await res.clone().text()).toBe(200);
      expect(await res.json()).toMatchObject({ version: 0, clientId: client, numExamples, replayed: false });
    }
    // The same report again replays; another is a conflict; c1 is no longer asked for version 0.
    expect(await (await report("evals", 0, "c1", { numExamples: 30, metrics: { loss: 2.5, accuracy: 0.6 } })).json()).toMatchObject({
      replayed: true,
    });
    const changed = await report("evals", 0, "c1", { numExamples: 31, metrics: { loss: 2.5 } });
    expect([changed.status, (await error(changed)).code]).toEqual([409, "upload_conflict"]);
    expect([await asked("evals", "c1"), await asked("evals", "c4")]).toEqual([[], [0]]);
    const view = await (await viewerApi("/federations/evals/versions/0/evaluation")).json<{
      reports: number;
      numExamples: number;
      metrics: Record<string, number>;
      clients: { clientId: string }[];
    }>();
    const mean = (key: "loss" | "accuracy") => {
      const given = reports.filter(([, , m]) => key in m);
      return given.reduce((s, [, n, m]) => s + n * (m as Record<string, number>)[key]!, 0) / given.reduce((s, [, n]) => s + n, 0);
    };
    expect([view.reports, view.numExamples, view.clients.map((c) => c.clientId).sort()]).toEqual([3, 85, ["c1", "c2", "c3"]]);
    expect(view.metrics.loss).toBeCloseTo(mean("loss"), 12);
    expect(view.metrics.accuracy).toBeCloseTo(mean("accuracy"), 12);
    expect(view.metrics.accuracy).toBeCloseTo((30 * 0.6 + 10 * 0.9) / 40, 12);
    // The list of evaluated versions holds the same fold, without each client's report.
    const { clients: _, ...folded } = view as typeof view & { clients: unknown };
    expect(await (await viewerApi("/federations/evals/evaluations")).json()).toEqual([folded]);
    // Bounded and signed: each refusal with its status and code.
    for (const [res, status, code] of [
      [await report("evals", 0, "c4", { numExamples: 5, metrics: { loss: 1e7 } }), 422, "metadata_invalid"],
      [await report("evals", 0, "c4", { numExamples: 200_000, metrics: { loss: 1 } }), 422, "metadata_invalid"],
      [await report("evals", 0, "c4", { numExamples: 0, metrics: {} }), 422, "metadata_invalid"],
      [await report("evals", 0, "c4", { numExamples: 5, metrics: { loss: 1 }, examples: ["a mail"] }), 422, "metadata_invalid"],
      [await report("evals", 0, "stranger", { numExamples: 5, metrics: { loss: 1 } }), 403, "forbidden"],
      [await api("/federations/evals/versions/9/evaluate", { method: "POST" }), 404, "version_not_found"],
      [await viewerApi("/federations/evals/versions/9/evaluation"), 404, "version_not_found"],
      [await viewerApi("/federations/evals/versions/0/evaluate", { method: "POST" }), 401, "unauthorized"],
    ] as const)
      expect([res.status, (await error(res)).code]).toEqual([status, code]);
  });

  it("asks for every k-th version as rounds close, with evaluateEvery", async () => {
    const config = federationConfig("evals-k", {
      clients: ["c1", "c2"],
      clientsPerRound: 2,
      minClients: 1,
      quorum: 1,
      evaluateEvery: 2,
      rounds: 4,
    });
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    // Three rounds, each closed by c1's upload: versions 1, 2 and 3; only version 2 is asked for.
    for (let round = 1; round <= 3; round++) {
      expect((await api("/federations/evals-k/rounds", { method: "POST" })).status).toBe(201);
      const global = await version("evals-k", round - 1);
      const res = await signed(`/federations/evals-k/rounds/${round}/updates/c1`, "c1", {
        method: "PUT",
        body: uploadBody(global, honestDelta(global, round), 10),
        headers: { "idempotency-key": `c1-${round}` },
      });
      expect(res.status, await res.clone().text()).toBe(200);
    }
    expect((await (await viewerApi("/federations/evals-k")).json<{ version: number }>()).version).toBe(3);
    expect([await asked("evals-k", "c1"), await asked("evals-k", "c2")]).toEqual([[2], [2]]);
  });

  it("folds a version's reports once keepRoundDetail newer versions are asked, dropping each client's, and takes no more", async () => {
    const clients = ["c1", "c2", "c3"];
    const config = federationConfig("evals-fold", {
      clients,
      clientsPerRound: 1,
      minClients: 1,
      evaluateEvery: 1,
      rounds: 3,
      keepRoundDetail: 2,
    });
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    expect((await api("/federations/evals-fold/versions/0/evaluate", { method: "POST" })).status).toBe(201);
    for (const [c, n, loss] of [
      ["c1", 10, 2],
      ["c2", 30, 4],
    ] as const)
      expect((await report("evals-fold", 0, c, { numExamples: n, metrics: { loss } })).status).toBe(200);
    const before = await (await viewerApi("/federations/evals-fold/versions/0/evaluation")).json<Record<string, unknown>>();
    expect(before).toMatchObject({ detail: "kept", reports: 2, numExamples: 40, metrics: { loss: 3.5 } });
    // Versions 1 and 2 are asked as rounds 1 and 2 close: version 0 is then past the latest two.
    for (let round = 1; round <= 2; round++) {
      expect((await api("/federations/evals-fold/rounds", { method: "POST" })).status).toBe(201);
      const sampled = (await (await api(`/federations/evals-fold/rounds/${round}`)).json<{ sampled: string[] }>()).sampled[0]!;
      const global = await version("evals-fold", round - 1);
      const res = await signed(`/federations/evals-fold/rounds/${round}/updates/${sampled}`, sampled, {
        method: "PUT",
        body: uploadBody(global, honestDelta(global, round), 10),
        headers: { "idempotency-key": `${sampled}-${round}` },
      });
      expect(res.status, await res.clone().text()).toBe(200);
    }
    const after = await (await viewerApi("/federations/evals-fold/versions/0/evaluation")).json<Record<string, unknown>>();
    expect(after).toEqual({ ...before, detail: "dropped", clients: [] });
    const listed = await (await viewerApi("/federations/evals-fold/evaluations")).json<{ version: number; reports: number }[]>();
    expect(listed.map((e) => [e.version, e.reports])).toEqual([
      [0, 2],
      [1, 0],
      [2, 0],
    ]);
    // c3 never reported version 0: it is no longer asked, and a late report is refused, the fold unchanged.
    expect(await asked("evals-fold", "c3")).toEqual([2, 1]);
    const late = await report("evals-fold", 0, "c3", { numExamples: 5, metrics: { loss: 9 } });
    expect([late.status, (await error(late)).code]).toEqual([409, "evaluation_closed"]);
    expect(await (await viewerApi("/federations/evals-fold/versions/0/evaluation")).json()).toEqual(after);
    // Asked again, a folded version says so rather than asking anyone.
    const again = await api("/federations/evals-fold/versions/0/evaluate", { method: "POST" });
    expect([again.status, (await error(again)).code]).toEqual([409, "evaluation_closed"]);
    expect(await asked("evals-fold", "c3")).toEqual([2, 1]);
  });

  it("folds a backlog of versions from before the limit 16 a request", async () => {
    const config = federationConfig("evals-backlog", { clients: ["c1"], clientsPerRound: 1, minClients: 1, keepRoundDetail: 2 });
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    const stub = env.AGGREGATOR.getByName("evals-backlog");
    // 30 versions asked and never folded, as a federation from before the limit holds them.
    const unfolded = () =>
      runInDurableObject(
        stub,
        (_i, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM evaluation_requests WHERE folded IS NULL").one().n,
      );
    await runInDurableObject(stub, (_i, state) => {
      for (let v = 100; v < 130; v++)
        state.storage.sql.exec("INSERT INTO evaluation_requests (federation_id, version, requested_at) VALUES ('evals-backlog', ?, 0)", v);
    });
    expect(await unfolded()).toBe(30);
    // A request folds 16 of the 29 past the newest two (then version 0 and 31 in all): 15 stay unfolded.
    expect((await api("/federations/evals-backlog/versions/0/evaluate", { method: "POST" })).status).toBe(201);
    expect(await unfolded()).toBe(15);
  });
});
