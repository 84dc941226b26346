// LoRA with per-client ranks (issue 21) in workerd: each client uploads the change of the version's first
// r_k ranks (FLoRA: fresh factors of rank r_k) in its own shapes; the aggregator lifts each into rank r and,
// by the federation's rule, writes version 1 as the example-weighted mean of the lifted changes
// (zero-padding) or as the pure rules make it from them (HetLoRA, FlexLoRA, FLoRA: src/fl/hetero/, checked
// against float64 references in test/fl/); an upload in another rank's shape is refused, the rank view
// serves what a client of that rank trains, and the combinations the lift or the rules cannot take are
// refused at creation.
import { describe, expect, it } from "vitest";
import { heteroAggregate } from "../../src/fl/hetero/aggregation.ts";
import { flatLayout, tensorFileSource } from "../../src/fl/flat-tensors.ts";
import { layoutAt, liftedUpdate, loraModules, truncateVersion } from "../../src/fl/methods/lora/hetero.ts";
import { arrayUpdateSet, memoryVector } from "../../src/fl/robust/update-set.ts";
import { decodeTensorFile, encodeTensorFile, type TensorFile } from "../../src/fl/tensor-file.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { toHfConfig } from "../../src/engine/config.ts";
import { tinyConfig } from "../fixtures/tiny-llama.ts";
import { api, signed } from "./coordinator-api.ts";
import { honestDelta, keptRows, version } from "./federation-rounds.ts";

// c2 is not assigned a rank (so 4, the version's) but trains 3, its deployment's ADAPTER_RANK.
const RANKS: Record<string, number> = { c1: 2, c2: 3, c3: 3 };
const EXAMPLES: Record<string, number> = { c1: 6, c2: 3, c3: 11 };
const method = (rule: string) => ({
  type: "lora",
  r: 4,
  alpha: 8,
  targetModules: ["q_proj", "v_proj"],
  hetero: { rule, ranks: { c1: 2, c3: 3 } },
});
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const create = (id: string, overrides: Record<string, unknown>) =>
  api("/federations", {
    method: "POST",
    body: JSON.stringify(federationConfig(id, { clients: ["c1", "c2", "c3"], clientsPerRound: 3, ...overrides })),
  });

/** Client c's upload: a change of its truncated version, in its own shapes. */
function body(v0: TensorFile, c: string, i: number): Uint8Array {
  const cut = truncateVersion(v0, RANKS[c]!);
  const delta = honestDelta(cut, i);
  return encodeTensorFile(delta, cut.shapes, { format: "pt", num_examples: String(EXAMPLES[c]), metrics: "{}" });
}

/** Each upload lifted into rank r as the aggregator reads it, as flat vectors. */
function liftedAll(v0Bytes: Uint8Array, bodies: Map<string, Uint8Array>, fresh: boolean): Float32Array[] {
  const layout = flatLayout(readSafetensorsHeader(v0Bytes));
  const v0 = decodeTensorFile(v0Bytes, "v0");
  return [...bodies].map(([c, b]) => {
    const own = layoutAt(layout, RANKS[c]!);
    const out = new Float32Array(layout.total);
    liftedUpdate(tensorFileSource(b, own, 4096, "upload").source, own, layout, flatOf(v0, v0Bytes).source, fresh).read(0, out);
    return out;
  });
}

const flatOf = (f: TensorFile, bytes: Uint8Array) => {
  const layout = flatLayout(readSafetensorsHeader(bytes));
  const out = new Float32Array(layout.total);
  for (const t of layout.tensors) out.set(f.tensors.get(t.name)!, t.start);
  return { layout, out, source: { total: layout.total, read: (s: number, o: Float32Array) => o.set(out.subarray(s, s + o.length)) } };
};

describe("a federation with per-client ranks in workerd", () => {
  for (const rule of ["zero-pad", "hetlora", "flexlora", "flora"])
    it(`${rule}: version 1 is the rule over the lifted rank-r_k uploads; another rank's shape is refused`, async () => {
      const id = `het-${rule}`;
      const created = await create(id, { method: method(rule) });
      expect(created.status, await created.clone().text()).toBe(201);
      const v0Bytes = new Uint8Array(await (await api(`/federations/${id}/versions/0`)).arrayBuffer());
      const v0 = decodeTensorFile(v0Bytes, "v0");
      const bodies = new Map(Object.keys(RANKS).map((c, i) => [c, body(v0, c, i)]));

      // c1 trains rank 2: a rank-4 upload from it is refused, and nothing is kept.
      expect((await api(`/federations/${id}/rounds`, { method: "POST" })).status).toBe(201);
      const wrong = await signed(`/federations/${id}/rounds/1/updates/c1`, "c1", {
        method: "PUT",
        body: encodeTensorFile(honestDelta(v0, 0), v0.shapes, { num_examples: "6" }),
        headers: { "idempotency-key": "c1-wrong" },
      });
      expect(wrong.status).toBe(422);
      expect((await error(wrong)).message).toBe('upload: client "c1" trains at most rank 2; its lora_A tensors have 4 rows');
      expect((await (await api(`/federations/${id}/rounds/1`)).json<{ uploads: number }>()).uploads).toBe(0);
      for (const [c, b] of bodies) {
        const res = await signed(`/federations/${id}/rounds/1/updates/${c}`, c, {
          method: "PUT",
          body: b,
          headers: { "idempotency-key": `${c}-1` },
        });
        expect(res.status, await res.clone().text()).toBe(200);
      }
      const round = await (await api(`/federations/${id}/rounds/1`)).json<{
        status: string;
        result: { aggregation?: { rule: string; clients: string[]; weights?: number[]; truncation?: number } };
      }>();
      expect(round.status).toBe("closed");
      const v1 = await version(id, 1);

      const lifted = liftedAll(v0Bytes, bodies, rule === "flora");
      const { layout, out: g } = flatOf(v0, v0Bytes);
      const want = new Float32Array(layout.total);
      if (rule === "zero-pad") {
        const n = Object.values(EXAMPLES);
        const total = n.reduce((a, b) => a + b, 0);
        want.set(g.map((x, j) => x + lifted.reduce((s, l, k) => s + (n[k]! / total) * l[j]!, 0)));
        expect(round.result.aggregation).toBeUndefined();
      } else {
        const out = memoryVector(layout.total);
        const source = { total: layout.total, read: (s: number, o: Float32Array) => o.set(g.subarray(s, s + o.length)) };
        const report = heteroAggregate(
          rule as "hetlora" | "flexlora" | "flora",
          arrayUpdateSet(lifted, Object.values(EXAMPLES)),
          loraModules(layout),
          source,
          out,
        );
        out.read(0, want);
        want.set(want.map((x, j) => x + g[j]!));
        expect(round.result.aggregation).toEqual({ ...report, clients: ["c1", "c2", "c3"] });
        expect(await keptRows(id)).toBe(0);
      }
      const got = flatOf(v1, v0Bytes).out;
      expect(Math.max(...got.map((x, j) => Math.abs(x - want[j]!)))).toBeLessThan(1e-6);
      // Version 1 moved past every rank: the check compared something.
      expect(got.some((x, j) => x !== g[j])).toBe(true);

      // The rank view: what a rank-2 client trains from version 1.
      const view = await api(`/federations/${id}/versions/1/rank?r=2`);
      expect(view.status).toBe(200);
      const cut = decodeTensorFile(new Uint8Array(await view.arrayBuffer()), "view");
      const expected = truncateVersion(v1, 2);
      for (const [k, t] of expected.tensors) {
        expect(cut.shapes.get(k)).toEqual(expected.shapes.get(k));
        expect(cut.tensors.get(k)).toEqual(t);
      }
      const above = await api(`/federations/${id}/versions/1/rank?r=5`);
      expect(above.status).toBe(404);
      expect((await error(above)).message).toContain("r must be a rank from 1 to the version's 4, not 5");
    });

  it("refuses what the lift or the rules cannot take, at creation", async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      [
        "het-over",
        { method: { ...method("zero-pad"), hetero: { rule: "zero-pad", ranks: { c1: 8 } } } },
        /client "c1" has rank 8, above the version's largest rank 4/,
      ],
      ["het-ffa", { method: { ...method("zero-pad"), freezeA: true } }, /use one of them/],
      ["het-sec", { method: method("zero-pad"), secureAggregation: { range: 1, maxWeight: 100 } }, /method.hetero: .*masked input hides/],
      ["het-robust", { method: method("hetlora"), robust: { rule: { name: "median" } } }, /both make the round's aggregate/],
      [
        "het-dp",
        { method: method("flexlora"), privacy: { mode: "central", noiseMultiplier: 1, clip: 0.1 } },
        /calibrated to the plain mean/,
      ],
      ["het-shards", { method: method("zero-pad"), shards: 2 }, /shards/],
      ["het-topk", { method: method("zero-pad"), topK: 0.1 }, /do not say the client's shapes/],
      ["het-fedadam", { method: method("flexlora"), strategy: { name: "fedadam" } }, /use strategy "fedavg", not "fedadam"/],
      [
        "het-prune",
        { method: { ...method("flexlora"), hetero: { rule: "flexlora", ranks: {}, prune: { gamma: 0.5, lambda: 1 } } } },
        /method.hetero.prune is HetLoRA's rank self-pruning; rule "flexlora" has none/,
      ],
    ];
    // A close past its bound on work though within its memory: 12 clients of rank 4 on 160 modules of 4096 × 4096
    // (K = 48 each: 48² · 8192 units a module, 3.02e9 in all; 80 bytes · 48 · 8192 = 31.5 MB for one module).
    const wide = toHfConfig(tinyConfig({ hidden: 4096, intermediate: 64, layers: 80, heads: 32, kvHeads: 32, vocab: 64 }));
    const many = Array.from({ length: 12 }, (_, i) => `c${i + 1}`);
    cases.push([
      "het-work",
      {
        model: { name: "wide", config: wide, quant: "f32" },
        clients: many,
        clientsPerRound: 12,
        method: { type: "lora", r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], hetero: { rule: "flexlora", ranks: { c1: 2 } } },
        maxUploadBytes: 33_488_896,
        clientMemoryMiB: 1 << 20,
      },
      /its close would take 3.02e\+9 units of work for 12 updates, over 3e\+9/,
    ]);
    for (const [id, overrides, message] of cases) {
      const res = await create(id, overrides);
      expect(res.status, id).toBe(422);
      expect((await error(res)).message, id).toMatch(message);
    }
  });
});
