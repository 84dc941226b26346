// Offsite-tuning as a federation: the model owner emulates a 6-layer model (adapter: layers 0 and 5;
// emulator: 0, 1, 4, 5), supplies version 0 as the operator, and two client workers in workerd — whose
// bucket holds the emulator only — fully fine-tune the adapter; the aggregator folds their deltas. The
// owner plugs the result into the full model and serves it at the inference endpoint.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFederation } from "../../cli/local-federation.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { offsiteLayout, plugIn } from "../../src/fl/methods/offsite/emulator.ts";
import { emulate } from "../../src/fl/methods/offsite/files.ts";
import { initialAdapterRequest } from "../../src/fl/methods/offsite/supply.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { startEndpoint } from "../../workers/inference-endpoint/server.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { runRound } from "../fixtures/rounds.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { referenceLogprobs } from "../reference/llama-f64.ts";
import { toHfConfig } from "../../src/engine/config.ts";

const model = tinyConfig({ heads: 4, kvHeads: 2, layers: 6 });
const full = tinyWeights(model, 15);
const split = { bottom: 1, top: 1, middle: 2 };
const tokenizerJson = tinyTokenizerJson(model.vocabSize);
const tokenizer = { json: tokenizerJson, config: { bos_token: "<s>", eos_token: "</s>", add_bos_token: true } };
const record = (i: number) => ({ prompt: `The ${["fox", "dog", "sun", "model"][i % 4]} trains.`, completion: ` It averages ${i}.` });
const MASTER = "offsite-master-key";
let root: string;
let fed: LocalFederation;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-offsite-"));
  fed = await LocalFederation.start({
    stateDir: join(root, "state"),
    masterKey: MASTER,
    clients: ["o1", "o2"].map((id, c) => ({ id, partition: Array.from({ length: 6 + 2 * c }, (_, i) => record(i * 2 + c)) })),
    modelFiles: emulate(model, full, split, "tiny-6", tokenizer).emulator,
    federations: ["offsite"],
  });
}, 120_000);

afterAll(async () => {
  await fed?.dispose();
  rmSync(root, { recursive: true, force: true });
});

describe("an offsite-tuning federation", () => {
  it("clients tune the adapter on the emulator; the plugged-in result is what the endpoint then serves", async () => {
    const config = federationConfig("offsite", {
      model: { name: "tiny-6", config: toHfConfig(model), quant: "f32" },
      clients: ["o1", "o2"],
      clientsPerRound: 2,
      minClients: 2,
      rounds: 2,
      method: { type: "offsite", ...split },
      local: { steps: 3, batchSize: 4, lr: 1e-3 },
    });
    expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    const { adapter } = emulate(model, full, split, "tiny-6", tokenizer);
    const supply = await initialAdapterRequest("offsite", fed.operatorToken, adapter.get("adapter_model.safetensors") as Uint8Array);
    const supplied = await fed.coordinator(supply.path, supply);
    expect(supplied.status, await supplied.clone().text()).toBe(201);

    for (const n of [1, 2]) expect(await runRound(fed, "offsite", n, ["o1", "o2"])).toMatchObject({ status: "closed", uploads: 2 });
    const version = async (v: number) =>
      decodeTensorFile(new Uint8Array(await (await fed.coordinator(`/federations/offsite/versions/${v}`)).arrayBuffer()), `v${v}`).tensors;
    const [v0, v2] = [await version(0), await version(2)];
    // Every adapter tensor of both layers moved; nothing else is in a version.
    expect([...v2.keys()].sort()).toEqual([...v0.keys()].sort());
    for (const [k, t] of v0) expect(Math.max(...v2.get(k)!.map((x, i) => Math.abs(x - t[i]!))), k).toBeGreaterThan(0);

    const plugged = plugIn(model, full, v2, offsiteLayout(model.numLayers, split));
    const endpoint = await startEndpoint({
      model: { config: model, weights: plugged, tokenizer: loadTokenizer(tokenizerJson, tokenizer.config) },
      fingerprint: "plugged",
      name: "tiny-6-tuned",
      port: 0,
      token: "offsite-endpoint-token",
    });
    try {
      const res = await fetch(`${endpoint.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer offsite-endpoint-token" },
        body: JSON.stringify({ model: "tiny-6-tuned", prompt: [1, 40, 41, 42, 43], max_tokens: 0, echo: true, logprobs: 0 }),
      });
      const served = (
        (await res.json()) as { choices: { logprobs: { token_logprobs: (number | null)[] } }[] }
      ).choices[0]!.logprobs.token_logprobs.slice(1) as number[];
      const tuned = referenceLogprobs(model, plugged, [1, 40, 41, 42, 43]);
      const base = referenceLogprobs(model, full, [1, 40, 41, 42, 43]);
      served.forEach((x, i) => expect(Math.abs(x - tuned[i]!)).toBeLessThan(1e-4));
      expect(Math.max(...served.map((x, i) => Math.abs(x - base[i]!)))).toBeGreaterThan(1e-3);
    } finally {
      await endpoint.close();
    }
  }, 300_000);
});
