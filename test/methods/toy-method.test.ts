// A method defined only in test/methods/toy/ runs as a real federation in workerd: the coordinator, the
// aggregator Durable Object and three client workers, bundled from entries in that folder that register
// it. Version 1 must be the example-weighted mean of the clients' values: the aggregator decoded, folded
// and closed the toy's uploads through the same pipeline as every built-in method.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFederation } from "../../cli/local-federation.ts";
import { toHfConfig } from "../../src/engine/config.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { recordLength, VALUE } from "./toy/method.ts";

const FED = "toy";
const CLIENTS = ["a", "b", "c"];
const model = tinyConfig({ heads: 4, kvHeads: 2 });
// Partitions of different sizes and lengths, so the weighted mean differs from the plain mean of means.
const partitions = [["x".repeat(100)], ["ab", "cd", "ef", "gh", "ij"], ["y".repeat(30), "z".repeat(10)]].map((texts) =>
  texts.map((text) => ({ text })),
);

let root: string;
let fed: LocalFederation;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-toy-"));
  fed = await LocalFederation.start({
    stateDir: join(root, "state"),
    masterKey: "toy-master-key-0123456789",
    clients: CLIENTS.map((id, i) => ({ id, partition: partitions[i]! })),
    modelFiles: hfModelFiles(model, tinyWeights(model, 3), tinyTokenizerJson(model.vocabSize), {
      tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" },
    }),
    federations: [FED],
    workerConfigs: { coordinator: "test/methods/toy/coordinator/wrangler.toml", client: "test/methods/toy/client/wrangler.toml" },
  });
}, 120_000);

afterAll(async () => {
  await fed?.dispose();
  rmSync(root, { recursive: true, force: true });
});

describe("a method defined in a test folder", () => {
  it("runs a round through the aggregator and client workers: version 1 is the weighted mean of the clients' values", async () => {
    const create = await fed.coordinator("/federations", {
      method: "POST",
      body: JSON.stringify({
        id: FED,
        model: { name: "tiny", config: toHfConfig(model) },
        method: { type: "toy-mean" },
        strategy: { name: "fedavg" },
        rounds: 1,
        clients: CLIENTS,
        clientsPerRound: 3,
        minClients: 3,
        local: { steps: 1, batchSize: 1, lr: 1 },
        deadlineSeconds: 600,
      }),
    });
    expect(create.status).toBe(201);
    // Its config is validated by its own schema: an unknown field is refused, naming it.
    const bad = await fed.coordinator("/federations", {
      method: "POST",
      body: JSON.stringify({
        ...(await (await fed.coordinator(`/federations/${FED}`)).json()).config,
        id: "toy-2",
        method: { type: "toy-mean", r: 4 },
      }),
    });
    expect(bad.status).toBe(422);
    expect(await bad.text()).toContain("method");

    expect((await fed.coordinator(`/federations/${FED}/rounds`, { method: "POST" })).status).toBe(201);
    for (const id of CLIENTS) {
      const task = await fed.client(id, "/tasks", { method: "POST", body: JSON.stringify({ federationId: FED, round: 1 }) });
      expect([task.status, task.status === 202 ? "" : await task.text()]).toEqual([202, ""]);
    }
    const until = Date.now() + 120_000;
    let round: { status: string; uploads: number };
    for (;;) {
      round = (await (await fed.coordinator(`/federations/${FED}/rounds/1`)).json()) as typeof round;
      if (round.status !== "open" || Date.now() > until) break;
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(round).toMatchObject({ status: "closed", uploads: 3 });

    const version = decodeTensorFile(new Uint8Array(await (await fed.coordinator(`/federations/${FED}/versions/1`)).arrayBuffer()), "v1");
    const means = partitions.map((p) => p.reduce((s, r) => s + recordLength(r), 0) / p.length);
    const expected = partitions.reduce((s, p, i) => s + p.length * means[i]!, 0) / partitions.reduce((s, p) => s + p.length, 0);
    const plain = means.reduce((a, b) => a + b, 0) / means.length;
    expect(Math.abs(expected - plain)).toBeGreaterThan(1);
    expect(version.tensors.get(VALUE)![0]).toBeCloseTo(expected, 4);
  }, 240_000);
});
