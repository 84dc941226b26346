// Prompt federations in the aggregator (workerd, real SQLite). FedBPT: versions are the global mean z
// and squared step size, clients upload their change, the fold gives FedBPT's recombination. Both it and
// discrete prompts refuse updates that would leave their point invalid, before folding them.
import { describe, expect, it } from "vitest";
import { bbtAggregate, bbtDelta, bbtGlobalOf } from "../../src/fl/methods/fedbpt/search.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { api, signedPut } from "./coordinator-api.ts";
import { federationConfig } from "../fixtures/federation.ts";

const method = { type: "fedbpt", promptTokens: 4, dimension: 6, sigma: 0.5, labels: ["spam", "ham"] };
const upload = (fed: string, round: number, client: string, body: Uint8Array) =>
  signedPut(`/federations/${fed}/rounds/${round}/updates/${client}`, body, client, { key: `${client}-${round}` });
const version = async (fed: string, v: number) =>
  bbtGlobalOf(decodeTensorFile(new Uint8Array(await (await api(`/federations/${fed}/versions/${v}`)).arrayBuffer()), `v${v}`).tensors);

describe("a FedBPT federation", () => {
  it("starts at z = 0 with the configured step size and recombines the clients' means and step sizes", async () => {
    const config = federationConfig("bpt-1", { method, clients: ["alice", "bob"], clientsPerRound: 2, minClients: 1 });
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    const g0 = await version("bpt-1", 0);
    expect(g0).toEqual({ mean: Array(6).fill(0), sigma: 0.5 });
    expect(await (await api("/federations/bpt-1/versions/0/adapter_config.json")).json()).toMatchObject({
      method: "fedbpt",
      prompt_tokens: 4,
      dimension: 6,
      labels: ["spam", "ham"],
    });
    expect((await api("/federations/bpt-1/rounds", { method: "POST" })).status).toBe(201);
    const clients = [
      { id: "alice", mean: [1, 0, -1, 0.5, 0, 2], sigma: 0.4, numExamples: 10 },
      { id: "bob", mean: [0, 1, 1, -0.5, 0.25, 0], sigma: 0.2, numExamples: 30 },
    ];
    for (const c of clients) {
      const delta = bbtDelta(g0, c);
      const body = encodeTensorFile(
        delta,
        new Map([
          ["mean", [6]],
          ["sigma2", [1]],
        ]),
        { format: "pt", num_examples: String(c.numExamples) },
      );
      expect((await upload("bpt-1", 1, c.id, body)).status).toBe(200);
    }
    const g1 = await version("bpt-1", 1);
    const want = bbtAggregate(clients);
    g1.mean.forEach((m, i) => expect(m).toBeCloseTo(want.mean[i]!, 6));
    expect(g1.sigma).toBeCloseTo(want.sigma, 6);
  });

  it("refuses an update whose step size would not be positive, keeping the round's accepted updates", async () => {
    const config = federationConfig("bpt-4", { method, clients: ["alice", "bob"], clientsPerRound: 2, minClients: 1 });
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    expect((await api("/federations/bpt-4/rounds", { method: "POST" })).status).toBe(201);
    const shapes = new Map([
      ["mean", [6]],
      ["sigma2", [1]],
    ]);
    const bad = encodeTensorFile(
      new Map([
        ["mean", new Float32Array(6)],
        ["sigma2", Float32Array.of(-1)],
      ]),
      shapes,
      { format: "pt", num_examples: "5" },
    );
    const res = await upload("bpt-4", 1, "alice", bad);
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({
      error: { code: "update_invalid", message: expect.stringMatching(/step size is not positive/) },
    });
    const good = encodeTensorFile(bbtDelta({ mean: Array(6).fill(0), sigma: 0.5 }, { mean: [1, 1, 1, 1, 1, 1], sigma: 0.3 }), shapes, {
      format: "pt",
      num_examples: "5",
    });
    expect((await upload("bpt-4", 1, "bob", good)).status).toBe(200);
    expect((await (await api("/federations/bpt-4/rounds/1")).json()) as { uploads: number }).toMatchObject({ uploads: 1 });
  });

  it("refuses a discrete-prompt update whose distributions leave the simplex", async () => {
    const phrases = ["free", "money", "meeting"];
    const config = federationConfig("dp-1", {
      method: { type: "discrete", slots: 2, phrases, labels: ["spam", "ham"] },
      clients: ["alice", "bob"],
      clientsPerRound: 2,
      minClients: 1,
    });
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    expect((await api("/federations/dp-1/rounds", { method: "POST" })).status).toBe(201);
    const third = 1 / 3;
    const change = (probs: number[]) =>
      encodeTensorFile(new Map([["probs", Float32Array.from(probs, (p) => p - third)]]), new Map([["probs", [2, 3]]]), {
        format: "pt",
        num_examples: "4",
      });
    for (const [probs, message] of [
      [[1.2, -0.2, 0, third, third, third], /probability -0\.2/],
      [[0.5, 0.5, 0.5, third, third, third], /sums to 1\.5/],
    ] as const) {
      const res = await upload("dp-1", 1, "alice", change([...probs]));
      expect(res.status).toBe(422);
      expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: "update_invalid",
        message: expect.stringMatching(message),
      });
    }
    expect((await upload("dp-1", 1, "alice", change([0.6, 0.4, 0, 0.2, 0.2, 0.6]))).status).toBe(200);
  });

  it("refuses other strategies, fewer than two labels and label words that do not match the labels", async () => {
    for (const c of [
      federationConfig("bpt-2", { method, strategy: { name: "fedyogi" } }),
      federationConfig("bpt-3", { method: { ...method, labels: ["spam"] } }),
      federationConfig("bpt-4", { method: { ...method, labelWords: ["offer", "work", "list"] } }),
    ]) {
      const res = await api("/federations", { method: "POST", body: JSON.stringify(c) });
      expect(res.status).toBe(422);
    }
    const worded = await api("/federations", {
      method: "POST",
      body: JSON.stringify(federationConfig("bpt-5", { method: { ...method, labelWords: ["offer", "work"] } })),
    });
    expect(worded.status, await worded.clone().text()).toBe(201);
    expect(await (await api("/federations/bpt-5/versions/0/adapter_config.json")).json()).toMatchObject({
      labels: ["spam", "ham"],
      label_words: ["offer", "work"],
    });
  });
});
