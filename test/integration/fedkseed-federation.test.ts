// FedKSeed as a federation: two client workers in workerd run forward-only zeroth-order steps on LoRA
// pairs of a tiny model and upload only per-seed scalar sums; the aggregator keeps the cumulative scalar
// per seed. Every party's model is w0 - lr * sum_j c_j z_j: rebuilt incrementally from the sparse
// per-round changes (as the clients do) or at once from the final version, it is the same.
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
import { zoGlobal, zoInitial, type ZoTask } from "../../src/fl/methods/fedkseed/zo-update.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { decodeSeedSums } from "../../src/fl/methods/fedkseed/seed-sums.ts";
import type { FedKSeedConfig } from "../../src/fl/methods/fedkseed/config.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { tinyTokenizerJson, writeHfModel } from "../fixtures/hf-model.ts";
import { runRound, uploadOf } from "../fixtures/rounds.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const model = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(model, 13);
const K = 256;
const method: FedKSeedConfig = {
  type: "fedkseed",
  k: K,
  epsilon: 1e-3,
  direction: "gaussian",
  pro: true,
  trains: { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj", "v_proj"], rslora: false },
};
const local = { steps: 6, batchSize: 4, lr: 1e-3, maxTokens: 32 };
const record = (i: number) => ({ prompt: `The ${["fox", "dog", "sun", "model"][i % 4]} trains.`, completion: ` It averages ${i}.` });
let root: string;
let fed: LocalFederation;
/** The same clients with the model only at an inference endpoint: their buckets hold no weights. */
let remote: LocalFederation;
let endpoint: RunningEndpoint;
const files = () =>
  hfModelFiles(model, weights, tinyTokenizerJson(model.vocabSize), { tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" } });
const partitions = ["k1", "k2"].map((id, c) => ({ id, partition: Array.from({ length: 6 + 2 * c }, (_, i) => record(i * 2 + c)) }));
const ENDPOINT_TOKEN = "ks-endpoint-token";

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-fedkseed-"));
  fed = await LocalFederation.start({
    stateDir: join(root, "state"),
    masterKey: "fedkseed-master-key",
    clients: partitions,
    modelFiles: files(),
    stepsPerInvocation: 4,
    federations: ["ks"],
  });
  const dir = writeHfModel(join(root, "model"), model, weights);
  endpoint = await startEndpoint({
    model: await loadModel(dirSource(dir)),
    fingerprint: "ks-fp",
    name: "tiny",
    port: 0,
    token: ENDPOINT_TOKEN,
  });
  const withoutWeights = new Map([...files()].filter(([f]) => !f.endsWith(".safetensors")));
  remote = await LocalFederation.start({
    stateDir: join(root, "remote"),
    masterKey: "fedkseed-master-key",
    clients: partitions,
    modelFiles: withoutWeights,
    stepsPerInvocation: 4,
    federations: ["ks"],
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

describe("a FedKSeed federation", () => {
  it("moves the global model with a few hundred bytes per client per round, and every party rebuilds the same model", async () => {
    const config = federationConfig("ks", {
      model: { name: "tiny", config: toHfConfig(model), quant: "f32" },
      clients: ["k1", "k2"],
      clientsPerRound: 2,
      minClients: 2,
      rounds: 3,
      method,
      local,
      seed: 21,
    });
    expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    for (const n of [1, 2, 3]) expect(await runRound(fed, "ks", n, ["k1", "k2"])).toMatchObject({ status: "closed", uploads: 2 });

    const uploads = await Promise.all(["k1", "k2"].map((id) => uploadOf(fed, id, "ks", 3)));
    for (const body of uploads) {
      const { sums, metadata } = decodeSeedSums(body, K, "upload");
      // At most one seed per step, and only scalars: the upload is a few hundred bytes.
      expect(sums.size).toBeGreaterThan(0);
      expect(sums.size).toBeLessThanOrEqual(local.steps);
      expect(body.length).toBeLessThan(1024);
      const metrics = JSON.parse(metadata.metrics!) as Record<string, number>;
      expect(metrics.local_steps).toBe(local.steps);
      // Round 3 started from version 2: the client fetched only round 2's sparse change.
      expect(metrics.download_bytes).toBeGreaterThan(0);
      expect(metrics.download_bytes).toBeLessThan(1024);
    }

    const seedSums = async (v: number) =>
      decodeTensorFile(new Uint8Array(await (await fed.coordinator(`/federations/ks/versions/${v}`)).arrayBuffer()), `v${v}`).tensors.get(
        "seed_sums",
      )!;
    const [v2, v3] = [await seedSums(2), await seedSums(3)];
    // Version 3 is version 2 plus the example-weighted mean of round 3's uploads (FedAvg, learning rate 1),
    // recombined here in float64 from the uploads as the clients sent them.
    const sent = uploads.map((body) => {
      const { sums, metadata } = decodeSeedSums(body, K, "upload");
      return { sums, examples: Number(metadata.num_examples) };
    });
    expect(sent.map((u) => u.examples)).toEqual([6, 8]);
    const expected = Float64Array.from(v2);
    for (const { sums, examples } of sent) for (const [j, c] of sums) expected[j]! += (c * examples) / 14;
    expect(Math.max(...[...v3].map((x, j) => Math.abs(x - expected[j]!)))).toBeLessThan(1e-6);
    expect(Math.max(...[...v3].map((x, j) => Math.abs(x - v2[j]!)))).toBeGreaterThan(1e-4);
    const cumulative = new Map([...v3.entries()].filter(([, c]) => c !== 0));
    expect(cumulative.size).toBeGreaterThan(0);
    expect(cumulative.size).toBeLessThanOrEqual(3 * 2 * local.steps);
    const task: Pick<ZoTask, "method" | "federationSeed" | "local"> = { method, federationSeed: 21, local };
    const w0 = zoInitial(model, weights, method.trains, 21);
    const global = zoGlobal(w0, task, cumulative);
    // The model moved from w0 (LoRA B was zero).
    expect(Math.max(...[...global].flatMap(([k, t]) => [...t].map((x, i) => Math.abs(x - w0.get(k)![i]!))))).toBeGreaterThan(0);
    let incremental = w0;
    for (const v of [1, 2, 3]) {
      const diff = decodeSeedSums(
        new Uint8Array(await (await fed.coordinator(`/federations/ks/versions/${v}/seeds?since=${v - 1}`)).arrayBuffer()),
        K,
        `diff ${v}`,
      ).sums;
      incremental = zoGlobal(incremental, task, diff);
    }
    for (const [k, t] of global) t.forEach((x, i) => expect(incremental.get(k)![i]).toBeCloseTo(x, 5));

    // The same federation with the model only at the endpoint: the clients hold the tokenizer, name
    // points by seed terms (POST /v1/perturbed-scores) and upload the same per-seed sums.
    expect((await remote.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    for (const n of [1, 2, 3]) expect(await runRound(remote, "ks", n, ["k1", "k2"])).toMatchObject({ status: "closed", uploads: 2 });
    for (const [c, id] of ["k1", "k2"].entries()) {
      const there = decodeSeedSums(await uploadOf(remote, id, "ks", 3), K, "remote upload").sums;
      const here = decodeSeedSums(uploads[c]!, K, "upload").sums;
      expect([...there.keys()].sort()).toEqual([...here.keys()].sort());
      for (const [j, v] of here) expect(there.get(j)!).toBeCloseTo(v, 1);
    }
    const health = (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: `Bearer ${ENDPOINT_TOKEN}` } })).json()) as {
      perturbed_rows: number;
    };
    expect(health.perturbed_rows).toBeGreaterThan(0);
  }, 300_000);
});
