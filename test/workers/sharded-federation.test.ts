// A sharded federation in workerd (issue 20): the coordinator routes each upload to the shard object its
// round and client hash to, each shard folds its clients' uploads with the same checks into a partial sum,
// and the root seals the shards, merges their sums and closes: at quorum, by the operator, at the deadline.
// Each version equals the example-weighted mean of exactly the accepted uploads, recomputed here in float64;
// a shard that cannot answer leaves the round open with the others' sums kept, and the close completes once
// it answers again.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type SecureTransport, secureRound } from "../../bench/lib/secure-clients.ts";
import { flatLayout } from "../../src/fl/flat-tensors.ts";
import { shardObjectName, shardOf } from "../../src/fl/shards.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { meanSegment, ratioSum } from "../../src/secagg/masked-update.ts";
import { decodeTensorFile, type TensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { api, signed } from "./coordinator-api.ts";
import { honestDelta, uploadBody, version } from "./federation-rounds.ts";

const CLIENTS = ["c1", "c2", "c3", "c4", "c5", "c6"];
const SHARDS = 3;
const examplesOf = (c: string) => 4 * Number(c.slice(1)) + 2;
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const shardStub = (id: string, shard: number) => env.AGGREGATOR.getByName(shardObjectName(id, shard));

interface Round {
  status: string;
  uploads: number;
  totalWeight: number;
  receipts: { clientId: string; numExamples: number }[];
  result: { version: number; uploads: number } | { reason: string } | null;
}
const roundOf = async (id: string, round: number) => (await (await api(`/federations/${id}/rounds/${round}`)).json()) as Round;

async function create(id: string, overrides: Record<string, unknown> = {}) {
  const res = await api("/federations", {
    method: "POST",
    body: JSON.stringify(
      federationConfig(id, { clients: CLIENTS, clientsPerRound: 6, minClients: 2, rounds: 5, shards: SHARDS, ...overrides }),
    ),
  });
  return res;
}

/** Uploads each client's delta on `base` to `round`; answers each upload's JSON. */
async function upload(id: string, round: number, base: TensorFile, clients: readonly string[]) {
  const deltas = new Map<string, TensorMap>();
  const answers = [];
  for (const c of clients) {
    const delta = honestDelta(base, Number(c.slice(1)) + 10 * round);
    deltas.set(c, delta);
    const res = await signed(`/federations/${id}/rounds/${round}/updates/${c}`, c, {
      method: "PUT",
      body: uploadBody(base, delta, examplesOf(c)),
      headers: { "idempotency-key": `${c}-${round}` },
    });
    expect(res.status, await res.clone().text()).toBe(200);
    answers.push((await res.json()) as { roundStatus: string; replayed: boolean });
  }
  return { deltas, answers };
}

/** The next version must be base + Σ n·Δ / Σ n over exactly these uploads (float64 here). */
function expectMean(next: TensorFile, base: TensorFile, deltas: ReadonlyMap<string, TensorMap>): void {
  const total = [...deltas.keys()].reduce((s, c) => s + examplesOf(c), 0);
  let worst = 0;
  for (const [name, t] of base.tensors) {
    const got = next.tensors.get(name)!;
    for (let i = 0; i < t.length; i++) {
      let mean = 0;
      for (const [c, d] of deltas) mean += (examplesOf(c) * d.get(name)![i]!) / total;
      worst = Math.max(worst, Math.abs(got[i]! - (t[i]! + mean)));
    }
  }
  expect(worst).toBeLessThan(1e-6);
}

const shardReceipts = (id: string, shard: number) =>
  runInDurableObject(shardStub(id, shard), (_i, state) =>
    state.storage.sql
      .exec<{ round: number; client_id: string }>("SELECT round, client_id FROM receipts ORDER BY round, client_id")
      .toArray()
      .map((r) => `${r.round}:${r.client_id}`),
  );

describe("a sharded federation in workerd", () => {
  it("folds each upload in its shard and closes at quorum, by the operator and at the deadline with the float64 mean", async () => {
    const id = "shard-a";
    const created = await create(id);
    expect(created.status, await created.clone().text()).toBe(201);
    // Round 1: every client; the upload that completes the last shard's part closes the round.
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    const v0 = await version(id, 0);
    const r1 = await upload(id, 1, v0, CLIENTS);
    expect(r1.answers.map((a) => a.roundStatus)).toEqual(["open", "open", "open", "open", "open", "closed"]);
    const round1 = await roundOf(id, 1);
    expect(round1).toMatchObject({ status: "closed", uploads: 6, totalWeight: 6 * 2 + 4 * 21, result: { version: 1, uploads: 6 } });
    expect(round1.receipts.map((r) => r.clientId).sort()).toEqual(CLIENTS);
    const v1 = await version(id, 1);
    expectMean(v1, v0, r1.deltas);
    // Each shard holds the receipts of its own clients only, and the clients spread over more than one shard.
    const held = await Promise.all([0, 1, 2].map((k) => shardReceipts(id, k)));
    for (let k = 0; k < SHARDS; k++) expect(held[k]).toEqual(CLIENTS.filter((c) => shardOf(1, c, SHARDS) === k).map((c) => `1:${c}`));
    expect(held.filter((h) => h.length > 0).length).toBeGreaterThan(1);
    // A retry of an accepted upload is answered from its shard's receipt, not folded again.
    const again = await signed(`/federations/${id}/rounds/1/updates/c1`, "c1", {
      method: "PUT",
      body: uploadBody(v0, r1.deltas.get("c1")!, examplesOf("c1")),
      headers: { "idempotency-key": "c1-1" },
    });
    expect(await again.json()).toMatchObject({ replayed: true, roundStatus: "closed" });

    // Round 2: three uploads, then the operator closes it with them.
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    const r2 = await upload(id, 2, v1, ["c2", "c4", "c5"]);
    expect(r2.answers.every((a) => a.roundStatus === "open")).toBe(true);
    // While it is open the operator sees the uploads counted over the shards.
    expect(await roundOf(id, 2)).toMatchObject({ status: "open", uploads: 3 });
    const closed = await api(`/federations/${id}/rounds/2/close`, { method: "POST" });
    expect(closed.status, await closed.clone().text()).toBe(200);
    expect(await roundOf(id, 2)).toMatchObject({ status: "closed", uploads: 3, result: { version: 2, uploads: 3 } });
    const v2 = await version(id, 2);
    expectMean(v2, v1, r2.deltas);
    // Round 2's shards dropped round 1's partial sums when they took their part (the root merged them first).
    const sums = await runInDurableObject(shardStub(id, shardOf(2, "c2", SHARDS)), (_i, state) =>
      state.storage.sql
        .exec<{ key: string }>("SELECT DISTINCT key FROM blobs WHERE key LIKE 'sum/%'")
        .toArray()
        .map((r) => r.key),
    );
    expect(sums).toEqual([`sum/${id}/2`]);

    // Round 3: two uploads, then the deadline passes: the alarm closes it with them; a late upload is refused.
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    const r3 = await upload(id, 3, v2, ["c1", "c6"]);
    const root = env.AGGREGATOR.getByName(id);
    await runInDurableObject(root, (_i, state) => {
      state.storage.sql.exec("UPDATE rounds SET deadline = ? WHERE federation_id = ? AND round = 3", Date.now() - 1, id);
    });
    await runDurableObjectAlarm(root);
    expect(await roundOf(id, 3)).toMatchObject({ status: "closed", uploads: 2, result: { version: 3, uploads: 2 } });
    expectMean(await version(id, 3), v2, r3.deltas);
    const late = await signed(`/federations/${id}/rounds/3/updates/c3`, "c3", {
      method: "PUT",
      body: uploadBody(v2, honestDelta(v2, 3), 5),
      headers: { "idempotency-key": "c3-3" },
    });
    expect(late.status).toBe(409);
    expect((await error(late)).code).toBe("round_closed");
  });

  it("a shard that cannot answer leaves the round open with the others' sums kept; the close completes once it answers", async () => {
    const id = "shard-b";
    expect((await create(id)).status).toBe(201);
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    const v0 = await version(id, 0);
    const r1 = await upload(id, 1, v0, ["c1", "c2", "c3", "c4"]);
    // The shard of c4 breaks: its table of parts is gone, so it cannot be sealed.
    const broken = shardOf(1, "c4", SHARDS);
    await runInDurableObject(shardStub(id, broken), (_i, state) => {
      state.storage.sql.exec("ALTER TABLE round_shards RENAME TO round_shards_away");
    });
    const refused = await api(`/federations/${id}/rounds/1/close`, { method: "POST" });
    expect(refused.status).toBe(503);
    const e = await error(refused);
    expect(e.code).toBe("shard_unavailable");
    expect(e.message).toContain(`shard ${broken} of "${id}" did not answer`);
    // Open still, its deadline brought forward so the alarm tries again within seconds.
    const after = (await (await api(`/federations/${id}/rounds/1`)).json()) as { status: string; deadline: number };
    expect(after.status).toBe("open");
    expect(after.deadline).toBeLessThanOrEqual(Date.now() + 5000);
    // And the alarm is set to that deadline, not left at the round's own.
    expect(await runInDurableObject(env.AGGREGATOR.getByName(id), (_i, state) => state.storage.getAlarm())).toBe(after.deadline);
    // The shards before it are sealed at the root, their counts in the round's row, none merged twice below.
    const sealed = await runInDurableObject(env.AGGREGATOR.getByName(id), (_i, state) =>
      state.storage.sql.exec<{ shard: number; sealed: number }>("SELECT shard, sealed FROM round_shards ORDER BY shard").toArray(),
    );
    expect(sealed.filter((s) => s.shard < broken).every((s) => s.sealed === 1)).toBe(true);
    expect(sealed.find((s) => s.shard === broken)!.sealed).toBe(0);
    await runInDurableObject(shardStub(id, broken), (_i, state) => {
      state.storage.sql.exec("ALTER TABLE round_shards_away RENAME TO round_shards");
    });
    const closed = await api(`/federations/${id}/rounds/1/close`, { method: "POST" });
    expect(closed.status, await closed.clone().text()).toBe(200);
    expect(await roundOf(id, 1)).toMatchObject({ status: "closed", uploads: 4, result: { version: 1, uploads: 4 } });
    expectMean(await version(id, 1), v0, r1.deltas);
    // Deleting the federation deletes what its shards hold.
    expect((await api(`/federations/${id}`, { method: "DELETE" })).status).toBe(200);
    for (let k = 0; k < SHARDS; k++)
      expect(
        await runInDurableObject(
          shardStub(id, k),
          (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM receipts").one().n,
        ),
      ).toBe(0);
  });

  it("a secure round (SecAgg+) over shards: masked inputs summed in Z_2^32 per shard and merged; the version is exact", async () => {
    const id = "shard-sec";
    const created = await create(id, { secureAggregation: { range: 1, maxWeight: 100 }, minClients: 3 });
    expect(created.status, await created.clone().text()).toBe(201);
    const ok = async (res: Promise<Response>) => {
      const r = await res;
      expect(r.ok, await r.clone().text()).toBe(true);
      return r;
    };
    for (const [round, dropped] of [
      [1, new Set<string>()],
      [2, new Set(["c3"])],
    ] as const) {
      await ok(api(`/federations/${id}/rounds`, { method: "POST" }));
      const before = await version(id, round - 1);
      const updates = new Map(
        CLIENTS.map((c) => [c, uploadBody(before, honestDelta(before, Number(c.slice(1)) + 10 * round), examplesOf(c))]),
      );
      const path = (c: string) => `/federations/${id}/rounds/${round}/secagg/${c}`;
      const transport: SecureTransport = {
        view: async (c) => (await ok(signed(path(c), c))).json(),
        send: async (c, kind, message) =>
          void (await ok(signed(`${path(c)}/${kind}`, c, { method: "PUT", body: new TextEncoder().encode(JSON.stringify(message)) }))),
        upload: async (c, body) =>
          void (await ok(
            signed(`/federations/${id}/rounds/${round}/updates/${c}`, c, {
              method: "PUT",
              body,
              headers: { "idempotency-key": `${c}-${round}` },
            }),
          )),
        close: async () => void (await ok(api(`/federations/${id}/rounds/${round}/close`, { method: "POST" }))),
      };
      const { want, enc, survivors } = await secureRound(transport, CLIENTS, updates, { dropped });
      const r = await roundOf(id, round);
      expect(r).toMatchObject({ status: "closed", uploads: CLIENTS.length - dropped.size });
      expect(r.receipts.map((x) => x.clientId).sort()).toEqual(survivors.slice().sort());
      // The survivors' inputs spread over more than one shard, and each shard holds its own clients' receipts.
      const held = await Promise.all([0, 1, 2].map((k) => shardReceipts(id, k)));
      for (let k = 0; k < SHARDS; k++)
        expect(held[k]!.filter((x) => x.startsWith(`${round}:`))).toEqual(
          survivors
            .filter((c) => shardOf(round, c, SHARDS) === k)
            .map((c) => `${round}:${c}`)
            .sort(),
        );
      expect(held.filter((h) => h.some((x) => x.startsWith(`${round}:`))).length).toBeGreaterThan(1);
      // Bit for bit: FedAvg of the mean decoded from the plain sum of the survivors' quantized inputs.
      const ratios = ratioSum(want[enc.values]!, enc, survivors.length);
      const mean = meanSegment(want.subarray(0, enc.values), enc, survivors.length, ratios);
      const bytes = new Uint8Array(await (await api(`/federations/${id}/versions/${round}`)).arrayBuffer());
      const after = decodeTensorFile(bytes, `v${round}`);
      for (const t of flatLayout(readSafetensorsHeader(bytes)).tensors)
        expect(after.tensors.get(t.name)).toEqual(before.tensors.get(t.name)!.map((x, i) => x + mean[t.start + i]!));
    }
  });

  it("a round whose shards' sums overflow float32 when added fails with the reason, the next round opens", async () => {
    const id = "shard-overflow";
    expect((await create(id, { minClients: 2 })).status).toBe(201);
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    const v0 = await version(id, 0);
    // Two clients of different shards, each weight 1 and values 2e38: each shard's sum is finite, theirs is not.
    const [a, b] = [CLIENTS.find((c) => shardOf(1, c, SHARDS) === 0)!, CLIENTS.find((c) => shardOf(1, c, SHARDS) === 1)!];
    for (const c of [a, b]) {
      const big = new Map([...v0.tensors].map(([k, t]) => [k, new Float32Array(t.length).fill(2e38)]));
      const res = await signed(`/federations/${id}/rounds/1/updates/${c}`, c, {
        method: "PUT",
        body: uploadBody(v0, big, 1),
        headers: { "idempotency-key": `${c}-1` },
      });
      expect(res.status, await res.clone().text()).toBe(200);
    }
    const closed = await api(`/federations/${id}/rounds/1/close`, { method: "POST" });
    expect(closed.status, await closed.clone().text()).toBe(200);
    const r = await roundOf(id, 1);
    expect(r.status).toBe("failed");
    expect((r.result as { reason: string }).reason).toContain("merging the shards' sums failed: running sum (float32 overflow)");
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
  });

  it("answers a retried upload to the previous round with its receipt after the next round began in its shard", async () => {
    const id = "shard-retry";
    expect((await create(id)).status).toBe(201);
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    const v0 = await version(id, 0);
    const first = await upload(id, 1, v0, CLIENTS);
    expect(first.answers.at(-1)!.roundStatus).toBe("closed");
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    // A round-2 upload reaches the shard c1 uploaded to in round 1: the shard adopts round 2 there.
    const shard = shardOf(1, "c1", SHARDS);
    const other = CLIENTS.find((c) => shardOf(2, c, SHARDS) === shard)!;
    await upload(id, 2, await version(id, 1), [other]);
    expect(await shardReceipts(id, shard)).toContain(`2:${other}`);
    // c1's answer for round 1 was lost: the same key and body again get the receipt, not "round closed".
    const retry = await signed(`/federations/${id}/rounds/1/updates/c1`, "c1", {
      method: "PUT",
      body: uploadBody(v0, first.deltas.get("c1")!, examplesOf("c1")),
      headers: { "idempotency-key": "c1-1" },
    });
    expect(retry.status, await retry.clone().text()).toBe(200);
    expect(await retry.json()).toMatchObject({ replayed: true, roundStatus: "closed" });
  });

  it("a shard keeps nothing of a deleted federation that a call already past its root would write back", async () => {
    const id = "shard-gone";
    expect((await create(id)).status).toBe(201);
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    // What an upload to shard 0 read from the root before the delete: its part of round 1.
    const part = await env.AGGREGATOR.getByName(id).shardRound(id, 1, 0);
    expect(part.ok).toBe(true);
    // Mid-delete: shard 0 dropped, the root not yet. An upload routed there reads its part from the living root, but
    // neither the part nor the version it would fetch is kept.
    const { createdAt } = (await (await api(`/federations/${id}`)).json()) as { createdAt: number };
    expect((await shardStub(id, 0).dropShard(id, createdAt)).ok).toBe(true);
    const routed = CLIENTS.find((c) => shardOf(1, c, SHARDS) === 0)!;
    const v0 = await version(id, 0);
    const refused = await signed(`/federations/${id}/rounds/1/updates/${routed}`, routed, {
      method: "PUT",
      body: uploadBody(v0, honestDelta(v0, 1), examplesOf(routed)),
      headers: { "idempotency-key": `${routed}-1` },
    });
    expect([refused.status, (await error(refused)).code]).toEqual([404, "federation_not_found"]);
    const blobs = () =>
      runInDurableObject(shardStub(id, 0), (_i, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM blobs").one().n);
    expect(await blobs()).toBe(0);
    expect((await api(`/federations/${id}`, { method: "DELETE" })).status).toBe(200);
    // The call goes on after the delete: the shard refuses to adopt the part and holds no row of it.
    const late = await shardStub(id, 0).sealShard(part.ok ? part.value : (undefined as never));
    expect(late).toMatchObject({ ok: false, error: { code: "federation_not_found" } });
    const rows = await runInDurableObject(shardStub(id, 0), (_i, state) =>
      ["federations", "rounds", "receipts", "round_shards"].map((t) => state.storage.sql.exec(`SELECT COUNT(*) AS n FROM ${t}`).one().n),
    );
    expect(rows).toEqual([0, 0, 0, 0]);
    expect(await blobs()).toBe(0);
    // A federation created again under the id is another (its creation time): its uploads fold in the shards.
    expect((await create(id)).status).toBe(201);
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    await upload(id, 1, await version(id, 0), CLIENTS.slice(0, 3));
    expect((await roundOf(id, 1)).uploads).toBe(3);
  });

  it("refuses shards with a robust rule or more shards than a round samples; an upload sent to the root", async () => {
    for (const [overrides, words] of [
      [{ robust: { rule: { name: "median" } } }, "a robust rule needs all of a round's updates in one object"],
      [{ shards: 7 }, "shards cannot exceed clientsPerRound"],
    ] as const) {
      const res = await create("shard-refused", overrides);
      expect(res.status).toBe(422);
      expect((await error(res)).message).toContain(words);
    }
    expect((await create("shard-c")).status).toBe(201);
    expect((await api("/federations/shard-c/rounds", { method: "POST" })).status).toBe(201);
    const direct = await env.AGGREGATOR.getByName("shard-c").upload({
      federationId: "shard-c",
      round: 1,
      clientId: "c1",
      idempotencyKey: "k",
      bodySha256: "00",
      nonce: "n",
      body: new Uint8Array(8),
    });
    expect(direct).toMatchObject({ ok: false, error: { status: 421, code: "misdirected" } });
  });
});
