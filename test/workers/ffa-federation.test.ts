// FFA-LoRA (Sun et al. 2024) in workerd (issue 21): clients upload only B, the aggregator reads each A's
// change as zero, so every version keeps version 0's A exactly and its B moves by the example-weighted mean
// of the uploads (float64 here); an upload carrying A, or missing a B, is refused; secure aggregation, whose
// masked inputs carry the whole version, is refused with it.
import { describe, expect, it } from "vitest";
import { encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { api, signed } from "./coordinator-api.ts";
import { honestDelta, version } from "./federation-rounds.ts";

const method = { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], freezeA: true };
const isA = (k: string) => k.endsWith(".lora_A.weight");
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

describe("an FFA-LoRA federation in workerd", () => {
  it("keeps version 0's A exactly and moves B by the weighted mean of B-only uploads", async () => {
    const id = "ffa-a";
    const created = await api("/federations", { method: "POST", body: JSON.stringify(federationConfig(id, { method, quorum: 4 })) });
    expect(created.status, await created.clone().text()).toBe(201);
    expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
    const v0 = await version(id, 0);
    const clients = ["c1", "c2", "c3", "c4"];
    const examples = [3, 9, 4, 20];
    const deltas = clients.map((_, i) => new Map([...honestDelta(v0, i)].filter(([k]) => !isA(k))));
    const put = (c: string, body: Uint8Array) =>
      signed(`/federations/${id}/rounds/1/updates/${c}`, c, { method: "PUT", body, headers: { "idempotency-key": `${c}-1` } });
    const body = (delta: Map<string, Float32Array>, n: number) =>
      encodeTensorFile(delta, new Map([...delta.keys()].map((k) => [k, v0.shapes.get(k)!])), { num_examples: String(n) });

    // An upload with A, or without one of the B, is refused before anything is folded.
    const withA = await put("c1", body(honestDelta(v0, 0), 3));
    expect(withA.status).toBe(422);
    expect((await error(withA)).message).toContain("is frozen (its change is zero): leave it out");
    const short = new Map([...deltas[0]!].slice(1));
    const missing = await put("c1", body(short, 3));
    expect(missing.status).toBe(422);
    expect((await error(missing)).message).toContain("is missing");

    for (const [i, c] of clients.entries()) {
      const res = await put(c, body(deltas[i]!, examples[i]!));
      expect(res.status, await res.clone().text()).toBe(200);
    }
    const v1 = await version(id, 1);
    const total = examples.reduce((a, b) => a + b, 0);
    let worst = 0;
    for (const [k, t] of v0.tensors) {
      if (isA(k)) {
        expect(v1.tensors.get(k)).toEqual(t);
        continue;
      }
      v1.tensors.get(k)!.forEach((x, j) => {
        const mean = deltas.reduce((s, d, i) => s + examples[i]! * d.get(k)![j]!, 0) / total;
        worst = Math.max(worst, Math.abs(x - (t[j]! + mean)));
      });
    }
    expect(worst).toBeLessThan(1e-7);
    // B moved: the check above compared something.
    expect([...v1.tensors].some(([k, t]) => !isA(k) && t.some((x, j) => x !== v0.tensors.get(k)![j]))).toBe(true);
  });

  it("is refused with secure aggregation, whose masked inputs carry the whole version", async () => {
    const res = await api("/federations", {
      method: "POST",
      body: JSON.stringify(federationConfig("ffa-sec", { method, secureAggregation: { range: 1, maxWeight: 100 }, clientsPerRound: 4 })),
    });
    expect(res.status).toBe(422);
    expect((await error(res)).message).toContain("use one of freezeA and secureAggregation");
  });
});
