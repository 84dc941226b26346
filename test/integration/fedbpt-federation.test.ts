// FedBPT as a federation: two client workers in workerd search BBT's subspace with CMA-ES (one
// generation per invocation, state resumed from SQLite) and upload only their mean z and step size;
// the aggregator recombines them. The same federation with the model only at an endpoint (clients hold
// the tokenizer; POST /v1/prompt-scores) moves the same way.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFederation } from "../../cli/local-federation.ts";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { toHfConfig } from "../../src/engine/config.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { bbtGlobalOf } from "../../src/fl/methods/fedbpt/search.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { tinyTokenizerJson, writeHfModel } from "../fixtures/hf-model.ts";
import { runRound, uploadOf } from "../fixtures/rounds.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const model = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(model, 23);
const labels = ["fox", "dog"];
const record = (i: number) => ({
  prompt: `The ${["quick brown", "lazy", "sleepy", "fast"][i % 4]} animal is a`,
  completion: ` ${labels[i % 2]}`,
});
let root: string;
let fed: LocalFederation;
let remote: LocalFederation;
let endpoint: RunningEndpoint;
const files = () =>
  hfModelFiles(model, weights, tinyTokenizerJson(model.vocabSize), { tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" } });
const ENDPOINT_TOKEN = "bpt-endpoint-token";

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-fedbpt-"));
  const clients = ["b1", "b2"].map((id, c) => ({ id, partition: Array.from({ length: 6 + 2 * c }, (_, i) => record(i * 2 + c)) }));
  fed = await LocalFederation.start({
    stateDir: join(root, "state"),
    masterKey: "bpt-federation-master",
    clients,
    modelFiles: files(),
    federations: ["bpt"],
  });
  endpoint = await startEndpoint({
    model: await loadModel(dirSource(writeHfModel(join(root, "model"), model, weights))),
    fingerprint: "bpt-fp",
    name: "tiny",
    port: 0,
    token: ENDPOINT_TOKEN,
  });
  const withoutWeights = new Map([...files()].filter(([f]) => !f.endsWith(".safetensors")));
  remote = await LocalFederation.start({
    stateDir: join(root, "remote"),
    masterKey: "bpt-federation-master",
    clients,
    modelFiles: withoutWeights,
    federations: ["bpt"],
    trunkUrl: endpoint.url,
    endpointToken: ENDPOINT_TOKEN,
  });
}, 120_000);

afterAll(async () => {
  await fed?.dispose();
  await remote?.dispose();
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("a FedBPT federation", () => {
  it(`clients run CMA-ES generations across invocations and upload mean and step size; the version moves, \
with the model local or at the endpoint`, async () => {
    const method = { type: "fedbpt", promptTokens: 2, dimension: 8, sigma: 1, generations: 3, labels, placement: "suffix" };
    const config = federationConfig("bpt", {
      model: { name: "tiny", config: toHfConfig(model), quant: "f32" },
      clients: ["b1", "b2"],
      clientsPerRound: 2,
      minClients: 2,
      rounds: 2,
      method,
      local: { steps: 1, batchSize: 4, lr: 1, maxTokens: 32 },
    });
    expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    for (const n of [1, 2]) expect(await runRound(fed, "bpt", n, ["b1", "b2"])).toMatchObject({ status: "closed", uploads: 2 });
    const version = async (v: number) =>
      bbtGlobalOf(
        decodeTensorFile(new Uint8Array(await (await fed.coordinator(`/federations/bpt/versions/${v}`)).arrayBuffer()), `v${v}`).tensors,
      );
    const [v0, v2] = [await version(0), await version(2)];
    expect(v2.mean.some((m, i) => m !== v0.mean[i])).toBe(true);
    expect(v2.sigma).toBeGreaterThan(0);
    const upload = decodeTensorFile(await uploadOf(fed, "b1", "bpt", 2), "upload");
    // Only d + 1 numbers go up: the mean's change and the squared step size's.
    expect([...upload.shapes]).toEqual([
      ["mean", [8]],
      ["sigma2", [1]],
    ]);
    // Version 2 is version 1 plus the example-weighted mean of round 2's changes (FedAvg), recombined
    // here in float64 from the uploads as the clients sent them: the mean, and the squared step size.
    const raw = async (v: number) =>
      decodeTensorFile(new Uint8Array(await (await fed.coordinator(`/federations/bpt/versions/${v}`)).arrayBuffer()), `v${v}`).tensors;
    const [r1, r2] = [await raw(1), await raw(2)];
    const sent = await Promise.all(["b1", "b2"].map(async (id) => decodeTensorFile(await uploadOf(fed, id, "bpt", 2), id)));
    expect(sent.map((u) => Number(u.metadata.num_examples))).toEqual([6, 8]);
    for (const name of ["mean", "sigma2"]) {
      const expected = Float64Array.from(r1.get(name)!);
      sent.forEach((u, k) => u.tensors.get(name)!.forEach((d, i) => (expected[i]! += (d * [6, 8][k]!) / 14)));
      expect(Math.max(...[...r2.get(name)!].map((x, i) => Math.abs(x - expected[i]!))), name).toBeLessThan(1e-6);
    }
    const metrics = JSON.parse(upload.metadata.metrics!) as Record<string, number>;
    expect(metrics.generations).toBe(3);
    expect(metrics.evaluations).toBe(3 * (4 + Math.floor(3 * Math.log(8))));

    // Clients without weights score each candidate z at the endpoint, which makes the prompt: same versions.
    expect((await remote.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    for (const n of [1, 2]) expect(await runRound(remote, "bpt", n, ["b1", "b2"])).toMatchObject({ status: "closed", uploads: 2 });
    const there = bbtGlobalOf(
      decodeTensorFile(new Uint8Array(await (await remote.coordinator("/federations/bpt/versions/2")).arrayBuffer()), "remote v2").tensors,
    );
    there.mean.forEach((m, i) => expect(m).toBeCloseTo(v2.mean[i]!, 3));
    expect(there.sigma).toBeCloseTo(v2.sigma, 4);
    const health = (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: `Bearer ${ENDPOINT_TOKEN}` } })).json()) as {
      prompt_rows: number;
    };
    expect(health.prompt_rows).toBeGreaterThan(0);
  }, 300_000);
});
