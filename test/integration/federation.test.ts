// A whole federation in workerd through Miniflare: the coordinator and its aggregator Durable Object,
// and four client workers, each with its own R2 data partition, the model in R2 and its own trainer
// Durable Object, run three rounds of FedAvg LoRA (tasks pushed over HTTP in rounds 1-2, pulled by the
// clients' cron in round 3). The test recomputes every global version from the
// clients' deltas, checks the held-out loss falls, and restarts workerd (persisted storage) in the
// middle of a round after two uploads were acknowledged.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tokenizeExample } from "../../src/data/examples.ts";
import { toHfConfig } from "../../src/engine/config.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { loraPairs } from "../../src/engine/lora/peft.ts";
import { hfModelFiles } from "../../src/engine/model-writer.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { heldOutLoss } from "../../src/engine/train/evaluate.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import { LocalFederation } from "../../cli/local-federation.ts";
import { uploadOf } from "../fixtures/rounds.ts";

const MASTER = "integration-master-key";
const CLIENTS = ["c1", "c2", "c3", "c4"];
const FED = "it-fed";
const model = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(model, 12);
const tokenizerJson = tinyTokenizerJson(model.vocabSize);
const animals = ["fox", "dog", "sun", "server", "client", "worker", "model", "rocket"];
const record = (i: number) => ({ prompt: `The ${animals[i % 8]} trains.`, completion: ` The ${animals[i % 8]} averages.` });
// Partitions of different sizes, so the example-weighted mean differs from a plain one.
const sizes = [6, 10, 14, 18];
const partitions = sizes.map((n, c) => Array.from({ length: n }, (_, i) => record(i * 4 + c)));
const heldOut = Array.from({ length: 16 }, (_, i) => record(i + 100));

let root: string;
let fed: LocalFederation;

const coordinator = (path: string, init?: { method?: string; body?: string }) => fed.coordinator(path, init);
const client = (id: string, path: string, init?: { method?: string; body?: string }) => fed.client(id, path, init);

interface Round {
  status: string;
  uploads: number;
  baseVersion: number;
  openedAt: number;
  closedAt: number | null;
  receipts: { clientId: string; receivedAt: number; numExamples: number; foldMs: number }[];
}

async function roundState(round: number): Promise<Round> {
  return (await (await coordinator(`/federations/${FED}/rounds/${round}`)).json()) as Round;
}

async function waitFor(round: number, done: (r: Round) => boolean, timeoutMs = 180_000): Promise<Round> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await roundState(round);
    if (done(r)) return r;
    if (Date.now() > until) throw new Error(`round ${round} still ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

async function version(v: number): Promise<TensorMap> {
  return decodeTensorFile(new Uint8Array(await (await coordinator(`/federations/${FED}/versions/${v}`)).arrayBuffer()), `v${v}`).tensors;
}

async function trigger(ids: string[], round: number): Promise<void> {
  for (const id of ids)
    expect((await client(id, "/tasks", { method: "POST", body: JSON.stringify({ federationId: FED, round }) })).status).toBe(202);
}

const tok = loadTokenizer(tokenizerJson);
const heldExamples = heldOut.map((r) => tokenizeExample(r, tok, 2, 32));
async function heldOutLossOf(adapter: TensorMap): Promise<number> {
  const fwd = await ForwardModel.create(ortNodeRuntime(), model, weights, {
    kind: "forward",
    quant: "int8",
    nll: true,
    lora: loraPairs(adapter, 4, 2),
  });
  return (await heldOutLoss(fwd, heldExamples)).loss;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-it-"));
  fed = await LocalFederation.start({
    stateDir: join(root, "state"),
    masterKey: MASTER,
    clients: CLIENTS.map((id, i) => ({ id, partition: partitions[i]! })),
    modelFiles: hfModelFiles(model, weights, tokenizerJson, { tokenizerConfig: { bos_token: "<s>", eos_token: "</s>" } }),
    federations: [FED],
    stepsPerInvocation: 3,
  });
}, 120_000);

afterAll(async () => {
  await fed?.dispose();
  rmSync(root, { recursive: true, force: true });
});

describe("a federation of four client workers", () => {
  it(`runs 3 rounds of FedAvg LoRA; each version is the weighted mean of the deltas; held-out loss falls; \
a restart mid-round loses nothing`, async () => {
    const config = {
      id: FED,
      model: { name: "tiny", config: toHfConfig(model), quant: "int8" },
      method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] },
      strategy: { name: "fedavg" },
      rounds: 3,
      clients: CLIENTS,
      clientsPerRound: 4,
      minClients: 2,
      local: { steps: 6, batchSize: 4, lr: 1e-2, maxTokens: 32 },
      deadlineSeconds: 600,
    };
    expect((await coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
    const losses = [await heldOutLossOf(await version(0))];
    const timeline: Round[] = [];
    for (let round = 1; round <= 3; round++) {
      expect((await coordinator(`/federations/${FED}/rounds`, { method: "POST" })).status).toBe(201);
      if (round === 2) {
        await trigger(CLIENTS.slice(0, 2), round);
        await waitFor(round, (r) => r.uploads === 2);
        // Restart workerd with the persisted storage, mid-round.
        await fed.restart();
        const after = await roundState(round);
        expect(after).toMatchObject({ status: "open", uploads: 2 });
        expect(after.receipts.map((r) => r.clientId).sort()).toEqual(["c1", "c2"]);
        await trigger(CLIENTS.slice(2), round);
      } else if (round === 3) {
        // Pull: each client's cron finds the open round it was sampled for.
        for (const id of CLIENTS) await fed.cron(id);
      } else await trigger(CLIENTS, round);
      const closed = await waitFor(round, (r) => r.status !== "open");
      expect(closed.status).toBe("closed");
      timeline.push(closed);

      // The new version, recomputed from the clients' own deltas (float64): v = v_prev + Σ n Δ / Σ n.
      const prev = await version(round - 1);
      const next = await version(round);
      const uploads = await Promise.all(CLIENTS.map((id) => uploadOf(fed, id, FED, round)));
      const deltas = uploads.map((u, k) => decodeTensorFile(u, CLIENTS[k]!));
      // A client keeps its last accepted upload only: the previous round's is gone from its storage.
      if (round > 1) await expect(uploadOf(fed, CLIENTS[0]!, FED, round - 1)).rejects.toThrow(/made no upload/);
      // Each client's job view describes its upload (size, SHA-256) without handing it out.
      for (const [k, id] of CLIENTS.entries())
        expect(await (await client(id, `/tasks/${FED}/${round}`)).json()).toMatchObject({
          status: "uploaded",
          uploadBytes: uploads[k]!.length,
          uploadSha256: createHash("sha256").update(uploads[k]!).digest("hex"),
        });
      const n = deltas.map((d) => Number(d.metadata.num_examples));
      expect(n).toEqual(sizes);
      const total = n.reduce((a, b) => a + b, 0);
      let maxErr = 0;
      for (const [name, p] of prev) {
        const got = next.get(name)!;
        for (let i = 0; i < p.length; i++) {
          const mean = deltas.reduce((s, d, k) => s + n[k]! * d.tensors.get(name)![i]!, 0) / total;
          maxErr = Math.max(maxErr, Math.abs(got[i]! - (p[i]! + mean)));
        }
      }
      expect(maxErr).toBeLessThan(1e-6);
      losses.push(await heldOutLossOf(next));
    }
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.9);
    for (let i = 1; i < losses.length; i++) expect(losses[i]!).toBeLessThan(losses[i - 1]!);
    process.stderr.write(`held-out loss by version: ${losses.map((l) => l.toFixed(4)).join(" -> ")}\n`);
    for (const [i, r] of timeline.entries())
      process.stderr.write(
        `round ${i + 1}: ${r.closedAt! - r.openedAt} ms open; uploads at +${r.receipts
          .map((x) => `${x.receivedAt - r.openedAt} ms (${x.clientId}, fold ${x.foldMs.toFixed(1)} ms)`)
          .join(", +")}\n`,
      );
  }, 600_000);
});
