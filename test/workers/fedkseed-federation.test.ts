// A FedKSeed federation in the aggregator (workerd, real SQLite): versions are the cumulative scalar per
// seed of the pool; clients upload sparse per-seed sums; a client fetches the sparse change since the
// version it holds.
import { describe, expect, it } from "vitest";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { decodeSeedSums, encodeSeedSums } from "../../src/fl/methods/fedkseed/seed-sums.ts";
import { writeSafetensors } from "../../src/protocol/safetensors.ts";
import { api, signedPut } from "./coordinator-api.ts";
import { federationConfig } from "../fixtures/federation.ts";

const K = 64;
const method = { type: "fedkseed", k: K, trains: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] } };
const config = (id: string, overrides: Record<string, unknown> = {}) =>
  federationConfig(id, { method, clients: ["alice", "bob"], clientsPerRound: 2, minClients: 1, ...overrides });
const upload = (fed: string, round: number, client: string, body: Uint8Array) =>
  signedPut(`/federations/${fed}/rounds/${round}/updates/${client}`, body, client, { key: `${client}-${round}-${body.length}` });
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const sums = (entries: [number, number][], n: number) => encodeSeedSums(new Map(entries), { format: "pt", num_examples: String(n) });

describe("a FedKSeed federation", () => {
  it("folds sparse per-seed sums into the cumulative vector and serves the sparse change since a version", async () => {
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config("ks-1")) })).status).toBe(201);
    const v0 = decodeTensorFile(new Uint8Array(await (await api("/federations/ks-1/versions/0")).arrayBuffer()), "v0");
    expect([...v0.tensors.keys()]).toEqual(["seed_sums"]);
    expect(v0.tensors.get("seed_sums")).toEqual(new Float32Array(K));
    expect(await (await api("/federations/ks-1/versions/0/adapter_config.json")).json()).toMatchObject({
      method: "fedkseed",
      k: K,
      epsilon: 1e-3,
      direction: "gaussian",
      pro: false,
      lr: 1e-3,
    });

    expect((await api("/federations/ks-1/rounds", { method: "POST" })).status).toBe(201);
    const alice = sums(
      [
        [3, 1.5],
        [10, -2],
      ],
      10,
    );
    expect(alice.length).toBeLessThan(300);
    expect((await upload("ks-1", 1, "alice", alice)).status).toBe(200);
    expect(
      (
        await upload(
          "ks-1",
          1,
          "bob",
          sums(
            [
              [3, 0.5],
              [20, 4],
            ],
            30,
          ),
        )
      ).status,
    ).toBe(200);
    const v1 = decodeTensorFile(new Uint8Array(await (await api("/federations/ks-1/versions/1")).arrayBuffer()), "v1").tensors.get(
      "seed_sums",
    )!;
    const expected = new Float32Array(K);
    expected[3] = (10 * 1.5 + 30 * 0.5) / 40;
    expected[10] = (10 * -2) / 40;
    expected[20] = (30 * 4) / 40;
    expect(v1).toEqual(expected);

    const diff = await api("/federations/ks-1/versions/1/seeds?since=0");
    expect(diff.status).toBe(200);
    const bytes = new Uint8Array(await diff.arrayBuffer());
    expect(bytes.length).toBeLessThan(300);
    expect(decodeSeedSums(bytes, K, "diff").sums).toEqual(
      new Map([
        [3, 0.75],
        [10, -0.5],
        [20, 3],
      ]),
    );
    expect(
      decodeSeedSums(new Uint8Array(await (await api("/federations/ks-1/versions/1/seeds?since=1")).arrayBuffer()), K, "diff").sums.size,
    ).toBe(0);
  });

  it("refuses malformed seed uploads, changing nothing", async () => {
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config("ks-2")) })).status).toBe(201);
    expect((await api("/federations/ks-2/rounds", { method: "POST" })).status).toBe(201);
    const cases: [string, Uint8Array, number, string][] = [
      ["an index outside the pool", sums([[K, 1]], 5), 422, "tensor_mismatch"],
      ["a NaN sum", sums([[1, NaN]], 5), 422, "non_finite"],
      [
        "decreasing indices",
        writeSafetensors(
          {
            indices: { dtype: "I32", shape: [2], data: Int32Array.from([5, 2]) },
            values: { dtype: "F32", shape: [2], data: Float32Array.from([1, 1]) },
          },
          { num_examples: "5" },
        ),
        422,
        "tensor_mismatch",
      ],
      [
        "a dense tensor instead",
        writeSafetensors({ seed_sums: { dtype: "F32", shape: [K], data: new Float32Array(K) } }, { num_examples: "5" }),
        422,
        "tensor_mismatch",
      ],
      ["bytes that are not safetensors", new TextEncoder().encode("not a tensor file"), 400, "safetensors_invalid"],
    ];
    for (const [what, body, status, code] of cases) {
      const res = await upload("ks-2", 1, "alice", body);
      expect([what, res.status, (await error(res)).code]).toEqual([what, status, code]);
    }
    expect(await (await api("/federations/ks-2/rounds/1")).json()).toMatchObject({ status: "open", uploads: 0 });
  });

  it("refuses other strategies, unknown tensors, and seed diffs of LoRA federations or backwards", async () => {
    const bad = [
      config("ks-3", { strategy: { name: "fedadam" } }),
      config("ks-4", { method: { ...method, trains: { type: "full", tensors: ["model.layers.9.mlp.up_proj.weight"] } } }),
    ];
    for (const c of bad) {
      const res = await api("/federations", { method: "POST", body: JSON.stringify(c) });
      expect([res.status, (await error(res)).code]).toEqual([422, "config_invalid"]);
    }
    expect((await api("/federations", { method: "POST", body: JSON.stringify(federationConfig("lora-ks")) })).status).toBe(201);
    expect((await api("/federations/lora-ks/versions/0/seeds")).status).toBe(404);
    expect((await api("/federations/ks-1/versions/0/seeds?since=1")).status).toBe(404);
    expect((await api("/federations/ks-1/versions/1/seeds?since=x")).status).toBe(400);
    // A parameter the view does not read is refused, not kept in R2 as one more copy of the same bytes.
    const unread = await api("/federations/ks-1/versions/1/seeds?since=0&a=1");
    expect([unread.status, (await error(unread)).message]).toEqual([400, 'the "seeds" view reads since, not "a"']);
  });
});
