// An offsite-tuning federation in the aggregator (workerd, real SQLite): no version 0 until the operator
// supplies the owner's adapter (with the operator's token, strictly checked, once); then rounds fold full-tensor deltas.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { toHfConfig } from "../../src/engine/config.ts";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { adapterShapes, offsiteLayout } from "../../src/fl/methods/offsite/emulator.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { api, signedPut } from "./coordinator-api.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { tinyConfig } from "../fixtures/tiny-llama.ts";

const model = tinyConfig({ heads: 4, kvHeads: 2, layers: 6 });
const split = { bottom: 1, top: 1, middle: 2 };
const shapes = adapterShapes(model, offsiteLayout(model.numLayers, split));
const config = (id: string, method: Record<string, unknown> = { type: "offsite", ...split }) =>
  federationConfig(id, {
    model: { name: "tiny-6", config: toHfConfig(model) },
    method,
    clients: ["alice", "bob"],
    clientsPerRound: 2,
    minClients: 1,
  });
const random = (seed: number, scale: number): TensorMap => {
  const u = seededUniform(seed);
  return new Map(
    [...shapes].map(([k, s]) => [
      k,
      normalSamples(
        u,
        s.reduce((a, b) => a * b, 1),
        scale,
      ),
    ]),
  );
};
const supply = (path: string, body: Uint8Array) => api(path, { method: "PUT", body });
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

describe("an offsite-tuning federation", () => {
  it(`has no version 0 and opens no round until the operator supplies the adapter, \
which is checked strictly and accepted once`, async () => {
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config("off-1")) })).status).toBe(201);
    expect(await (await api("/federations/off-1/versions/0/adapter_config.json")).json()).toEqual({
      method: "offsite",
      base_model: "tiny-6",
      ...split,
      adapter_layers: [0, 5],
      emulator_layers: [0, 1, 4, 5],
    });
    expect((await api("/federations/off-1/versions/0")).status).toBe(404);
    const early = await api("/federations/off-1/rounds", { method: "POST" });
    expect(early.status).toBe(409);
    expect(await error(early)).toMatchObject({
      code: "initial_missing",
      message: expect.stringMatching(/PUT \/federations\/off-1\/versions\/0/),
    });

    const initial = random(1, 0.02);
    const path = "/federations/off-1/versions/0";
    const refusals: [string, Promise<Response>, number, string][] = [
      ["a client's signature", signedPut(path, encodeTensorFile(initial, shapes), "alice"), 401, "unauthorized"],
      ["a tensor missing", supply(path, encodeTensorFile(new Map([...initial].slice(1)), shapes)), 422, "tensor_mismatch"],
      [
        "a middle layer's tensor",
        supply(
          path,
          encodeTensorFile(
            new Map(initial).set("model.layers.2.mlp.up_proj.weight", new Float32Array(96 * 64)),
            new Map(shapes).set("model.layers.2.mlp.up_proj.weight", [96, 64]),
          ),
        ),
        422,
        "tensor_mismatch",
      ],
      [
        "a transposed tensor",
        supply(path, encodeTensorFile(initial, new Map(shapes).set("model.layers.0.mlp.up_proj.weight", [64, 96]))),
        422,
        "tensor_mismatch",
      ],
      [
        "a NaN",
        supply(
          path,
          encodeTensorFile(new Map(initial).set("model.layers.5.input_layernorm.weight", new Float32Array(64).fill(NaN)), shapes),
        ),
        422,
        "non_finite",
      ],
    ];
    for (const [what, call, status, code] of refusals) {
      const res = await call;
      expect([what, res.status, (await error(res)).code]).toEqual([what, status, code]);
    }
    expect((await api(path)).status).toBe(404);

    const ok = await supply(path, encodeTensorFile(initial, shapes));
    expect(ok.status).toBe(201);
    const v0 = decodeTensorFile(new Uint8Array(await (await api(path)).arrayBuffer()), "v0");
    expect(v0.shapes).toEqual(shapes);
    for (const [k, t] of initial) expect(v0.tensors.get(k)).toEqual(t);
    const again = await supply(path, encodeTensorFile(random(2, 0.02), shapes));
    expect([again.status, (await error(again)).code]).toEqual([409, "initial_exists"]);
  });

  it("folds full-tensor deltas into the adapter: version 1 is version 0 plus the example-weighted mean", async () => {
    const stub = env.AGGREGATOR.getByName("off-2");
    expect((await api("/federations", { method: "POST", body: JSON.stringify(config("off-2")) })).status).toBe(201);
    const initial = random(3, 0.02);
    expect((await stub.supplyInitial("off-2", encodeTensorFile(initial, shapes))).ok).toBe(true);
    const round = await stub.openRound("off-2");
    expect(round.ok && round.value.task.method).toEqual({ type: "offsite", ...split });
    const deltas = [random(4, 0.01), random(5, 0.01)];
    for (const [i, client] of ["alice", "bob"].entries()) {
      const body = encodeTensorFile(deltas[i]!, shapes, { format: "pt", num_examples: String(i === 0 ? 10 : 30) });
      const res = await signedPut(`/federations/off-2/rounds/1/updates/${client}`, body, client, { key: `${client}-1` });
      expect(res.status).toBe(200);
    }
    const v1 = await stub.getVersion("off-2", 1);
    const next = decodeTensorFile(v1.ok ? v1.value : new Uint8Array(), "v1");
    for (const [k, t] of initial) {
      const got = next.tensors.get(k)!;
      t.forEach((x, j) => expect(got[j]).toBeCloseTo(x + (10 * deltas[0]!.get(k)![j]! + 30 * deltas[1]!.get(k)![j]!) / 40, 6));
    }
  });

  it("refuses splits the model cannot hold and an initial adapter for a LoRA federation", async () => {
    for (const method of [
      { type: "offsite", bottom: 4, top: 3, middle: 0 },
      { type: "offsite", bottom: 0, top: 0, middle: 2 },
      { type: "offsite", bottom: 1, top: 1, middle: 1 },
    ]) {
      const res = await api("/federations", {
        method: "POST",
        body: JSON.stringify(config(`off-bad-${method.bottom}-${method.middle}`, method)),
      });
      expect([res.status, (await error(res)).code]).toEqual([422, "config_invalid"]);
    }
    expect((await api("/federations", { method: "POST", body: JSON.stringify(federationConfig("lora-1")) })).status).toBe(201);
    const res = await supply("/federations/lora-1/versions/0", encodeTensorFile(random(6, 0.02), shapes));
    expect([res.status, (await error(res)).code]).toEqual([409, "initial_not_needed"]);
  });
});
