// Split LoRA as a federation: two client workers in workerd whose LoRA sits above a cut layer get the
// frozen trunk's hidden states from the inference endpoint (a Node server here, as it would be on a
// GPU machine) and hold and train only the layers above it; the aggregator folds their deltas as for any LoRA.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFederation } from "../../cli/local-federation.ts";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { runRound } from "../fixtures/rounds.ts";
import { tinyTokenizerJson, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const model = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(model, 12);
const record = (i: number) => ({ prompt: `The ${["fox", "dog", "sun", "model"][i % 4]} trains.`, completion: ` It averages ${i}.` });
let root: string;
let fed: LocalFederation;
let endpoint: RunningEndpoint;
const ENDPOINT_TOKEN = "split-endpoint-token";

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-split-"));
  const dir = writeHfModel(join(root, "model"), model, weights);
  endpoint = await startEndpoint({
    model: await loadModel(dirSource(dir)),
    fingerprint: "split-fp",
    name: "tiny",
    port: 0,
    token: ENDPOINT_TOKEN,
  });
  fed = await LocalFederation.start({
    stateDir: join(root, "state"),
    masterKey: "split-master-key-16",
    clients: ["s1", "s2"].map((id, c) => ({ id, partition: Array.from({ length: 6 + 4 * c }, (_, i) => record(i * 2 + c)) })),
    // The clients' bucket holds no layer below the cut: a client that loaded the trunk would fail.
    modelFiles: hfModelFiles(
      model,
      new Map([...weights].filter(([k]) => !k.startsWith("model.layers.0."))),
      tinyTokenizerJson(model.vocabSize),
      { tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" } },
    ),
    trunkUrl: endpoint.url,
    federations: ["split"],
    endpointToken: ENDPOINT_TOKEN,
  });
}, 120_000);

afterAll(async () => {
  await fed?.dispose();
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("a split federation", () => {
  it("clients train above the cut on the endpoint's trunk states; the aggregator folds their deltas", async () => {
    const config = federationConfig("split", {
      clients: ["s1", "s2"],
      clientsPerRound: 2,
      minClients: 2,
      rounds: 2,
      method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], fromLayer: 1 },
      local: { steps: 4, batchSize: 4, lr: 1e-2 },
    });
    expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    const v0 = decodeTensorFile(new Uint8Array(await (await fed.coordinator("/federations/split/versions/0")).arrayBuffer()), "v0");
    // LoRA only on the layers above the cut (layer 1 of 2).
    expect([...v0.tensors.keys()].every((k) => k.includes(".layers.1."))).toBe(true);
    expect(await (await fed.coordinator("/federations/split/versions/0/adapter_config.json")).json()).toMatchObject({
      layers_to_transform: [1],
    });
    const trunkRows = async (n: number) => {
      expect(await runRound(fed, "split", n, ["s1", "s2"])).toMatchObject({ status: "closed", uploads: 2 });
      return (
        (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: `Bearer ${ENDPOINT_TOKEN}` } })).json()) as {
          hidden_state_rows: number;
        }
      ).hidden_state_rows;
    };
    // Round 1 fetches every training example's trunk states (16 distinct examples); round 2, with a new
    // global adapter but the same frozen trunk, is served from the clients' caches.
    const afterFirst = await trunkRows(1);
    expect(afterFirst).toBeGreaterThanOrEqual(6 + 10);
    expect(await trunkRows(2)).toBe(afterFirst);
    const v1 = decodeTensorFile(new Uint8Array(await (await fed.coordinator("/federations/split/versions/1")).arrayBuffer()), "v1");
    let moved = 0;
    for (const [k, t] of v0.tensors) moved = Math.max(moved, ...v1.tensors.get(k)!.map((x, i) => Math.abs(x - t[i]!)));
    expect(moved).toBeGreaterThan(0);
  }, 300_000);
});
