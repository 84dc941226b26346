// Discrete prompts as a federation: two client workers in workerd hold only the tokenizer and their
// partition, score sampled prompts at an OpenAI-compatible API (the reference endpoint, in Node) and
// upload the change of their slot distributions; the aggregator averages them (FedAvg of distributions).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFederation } from "../../cli/local-federation.ts";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { toHfConfig } from "../../src/engine/config.ts";
import { distributionsOf } from "../../src/fl/methods/discrete/round.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { tinyTokenizerJson, writeHfModel } from "../fixtures/hf-model.ts";
import { runRound, uploadOf } from "../fixtures/rounds.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const model = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(model, 29);
const labels = ["fox", "dog"];
const phrases = ["quick", "lazy", "sun", "server"];
const record = (i: number) => ({
  prompt: `The ${["quick brown", "lazy", "sleepy", "fast"][i % 4]} animal is a`,
  completion: ` ${labels[i % 2]}`,
});
const sizes = [6, 10];
let root: string;
let fed: LocalFederation;
let endpoint: RunningEndpoint;
const ENDPOINT_TOKEN = "discrete-endpoint-token";

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-discrete-"));
  const dir = writeHfModel(join(root, "model"), model, weights);
  endpoint = await startEndpoint({
    model: await loadModel(dirSource(dir)),
    fingerprint: "discrete-fp",
    name: "tiny",
    port: 0,
    token: ENDPOINT_TOKEN,
  });
  fed = await LocalFederation.start({
    stateDir: join(root, "state"),
    masterKey: "discrete-master-key",
    clients: ["d1", "d2"].map((id, c) => ({ id, partition: Array.from({ length: sizes[c]! }, (_, i) => record(i * 2 + c)) })),
    // Clients get the tokenizer and config only: a worker that tried to load weights would fail.
    modelFiles: new Map(
      [
        ...hfModelFiles(model, weights, tinyTokenizerJson(model.vocabSize), { tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" } }),
      ].filter(([f]) => !f.endsWith(".safetensors")),
    ),
    completionsUrl: `${endpoint.url}/v1`,
    endpointToken: ENDPOINT_TOKEN,
    stepsPerInvocation: 2,
    federations: ["dp"],
  });
}, 120_000);

afterAll(async () => {
  await fed?.dispose();
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("a discrete-prompt federation", () => {
  it("clients learn slot distributions at the API across invocations; the version is the average of theirs", async () => {
    const method = { type: "discrete", slots: 2, phrases, population: 3, labels, queryBudget: 400 };
    const config = federationConfig("dp", {
      model: { name: "tiny", config: toHfConfig(model), quant: "f32" },
      clients: ["d1", "d2"],
      clientsPerRound: 2,
      minClients: 2,
      rounds: 2,
      method,
      local: { steps: 5, batchSize: 4, lr: 0.5, maxTokens: 32 },
    });
    expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    const version = async (v: number) =>
      distributionsOf(
        decodeTensorFile(new Uint8Array(await (await fed.coordinator(`/federations/dp/versions/${v}`)).arrayBuffer()), `v${v}`).tensors,
        { slots: 2, phrases },
      );
    expect(await version(0)).toEqual([Array(4).fill(0.25), Array(4).fill(0.25)]);
    for (const n of [1, 2]) expect(await runRound(fed, "dp", n, ["d1", "d2"])).toMatchObject({ status: "closed", uploads: 2 });
    const [v1, v2] = [await version(1), await version(2)];
    expect(v2.flat().some((p, i) => Math.abs(p - v1.flat()[i]!) > 1e-4)).toBe(true);
    for (const p of v2) expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    // Version 2 = version 1 + the example-weighted mean of the clients' changes.
    const uploads = await Promise.all(["d1", "d2"].map(async (id) => decodeTensorFile(await uploadOf(fed, id, "dp", 2), id)));
    const change = uploads.map((u) => u.tensors.get("probs")!);
    v2.flat().forEach((p, i) =>
      expect(p).toBeCloseTo(v1.flat()[i]! + (sizes[0]! * change[0]![i]! + sizes[1]! * change[1]![i]!) / (sizes[0]! + sizes[1]!), 5),
    );
    // Up: 2 x 4 numbers. Each step scored 3 prompts x 4 examples x 2 labels = 24 rows in one request; the
    // budget (400 rows) would pay for 16 steps, so all 5 asked ran.
    expect([...uploads[0]!.shapes]).toEqual([["probs", [2, 4]]]);
    const metrics = JSON.parse(uploads[0]!.metadata.metrics!) as Record<string, number>;
    expect(metrics).toMatchObject({ steps: 5, api_rows: 5 * 24, api_requests: 5 });
    expect(metrics.train_loss).toBeGreaterThan(0);
  }, 300_000);
});
