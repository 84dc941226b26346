// HetLoRA's rank self-pruning on the client (src/fl/methods/lora/hetlora-prune.ts): the rank a prune lowers to,
// the tail's norm product and its gradient against float64 references (the gradient by central differences of
// the product), the upload cut to the kept ranks, and the kept rank across rounds and a retried round.
import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { graphName } from "../../src/engine/lora/peft.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { heldRank, holdRank, prunedRank, tailPenalty, tailScore } from "../../src/fl/methods/lora/hetlora-prune.ts";
import { decodeTensorFile, type TensorFile } from "../../src/fl/tensor-file.ts";
import { tokenizeExample } from "../../src/data/examples.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { loraClient } from "../../src/fl/methods/lora/client.ts";
import { truncateVersion } from "../../src/fl/methods/lora/hetero.ts";
import { LoraConfig } from "../../src/fl/methods/lora/config.ts";
import type { ClientResources, SliceContext } from "../../src/fl/methods/method.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";

const PREFIX = "base_model.model.model.layers.0.self_attn";
// Two modules: q_proj at rank 4 (in 6, out 5) and v_proj at rank 2 (a rank_pattern's lower rank; in 6, out 3).
const MODULES = [
  { name: `${PREFIX}.q_proj`, r: 4, in: 6, out: 5 },
  { name: `${PREFIX}.v_proj`, r: 2, in: 6, out: 3 },
];

function version(seed: number): TensorFile {
  const uniform = seededUniform(seed);
  const next = () => uniform() * 2 - 1;
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const m of MODULES) {
    tensors.set(`${m.name}.lora_A.weight`, Float32Array.from({ length: m.r * m.in }, next));
    shapes.set(`${m.name}.lora_A.weight`, [m.r, m.in]);
    tensors.set(`${m.name}.lora_B.weight`, Float32Array.from({ length: m.out * m.r }, next));
    shapes.set(`${m.name}.lora_B.weight`, [m.out, m.r]);
  }
  return { tensors, shapes, metadata: {} };
}

const byGraph = (f: TensorFile): TensorMap => new Map([...f.tensors].map(([k, t]) => [graphName(k), Float32Array.from(t)]));

/** Σ ‖B[:, from:]‖ ‖A[from:, :]‖ in float64, straight from the definition. */
function referenceScore(params: TensorMap, from: number): number {
  let sum = 0;
  for (const m of MODULES) {
    if (m.r <= from) continue;
    const a = params.get(graphName(`${m.name}.lora_A.weight`))!;
    const b = params.get(graphName(`${m.name}.lora_B.weight`))!;
    let a2 = 0;
    let b2 = 0;
    for (let k = from; k < m.r; k++) {
      for (let i = 0; i < m.in; i++) a2 += a[k * m.in + i]! ** 2;
      for (let o = 0; o < m.out; o++) b2 += b[o * m.r + k]! ** 2;
    }
    sum += Math.sqrt(a2) * Math.sqrt(b2);
  }
  return sum;
}

describe("HetLoRA's rank self-pruning", () => {
  it("lowers a rank to max(minRank, ⌊γ r⌋), never above r", () => {
    expect(prunedRank({ gamma: 0.99, lambda: 1, minRank: 1 }, 8)).toBe(7);
    expect(prunedRank({ gamma: 0.5, lambda: 1, minRank: 1 }, 8)).toBe(4);
    expect(prunedRank({ gamma: 0.5, lambda: 1, minRank: 6 }, 8)).toBe(6);
    expect(prunedRank({ gamma: 0.5, lambda: 1, minRank: 6 }, 4)).toBe(4);
    expect(prunedRank({ gamma: 0.3, lambda: 1, minRank: 1 }, 2)).toBe(1);
    // 0.29 · 100 is 28.999999999999996 in floating point.
    expect(prunedRank({ gamma: 0.29, lambda: 1, minRank: 1 }, 100)).toBe(29);
  });

  it("scores the tail as the float64 reference does, each module at its own rank", () => {
    const v = version(3);
    for (const from of [0, 1, 2, 3]) expect(tailScore(v, from)).toBeCloseTo(referenceScore(byGraph(v), from), 5);
    // From rank 2 v_proj (rank 2) has no tail: only q_proj's ranks 2 and 3 count.
    const params = byGraph(v);
    for (const t of [graphName(`${PREFIX}.q_proj.lora_A.weight`), graphName(`${PREFIX}.q_proj.lora_B.weight`)]) params.get(t)!.fill(0);
    expect(tailScore(v, 2, (name) => params.get(graphName(name))!)).toBe(0);
    expect(tailScore(v, 1, (name) => params.get(graphName(name))!)).toBeGreaterThan(0);
  });

  it("adds λ times the gradient of the tail's norm product, as central differences of the reference find it", () => {
    const v = version(7);
    const params = byGraph(v);
    const lambda = 0.7;
    const from = 1;
    const grads: TensorMap = new Map([...params].map(([k, t]) => [k, new Float32Array(t.length)]));
    tailPenalty({ gamma: 0.5, lambda, minRank: 1 }, v, from)(grads, params);
    const h = 1e-3;
    let checked = 0;
    for (const [name, t] of params) {
      const f64 = new Map([...params].map(([k, x]) => [k, Float64Array.from(x) as unknown as Float32Array]));
      const p = f64.get(name)!;
      for (let i = 0; i < t.length; i++) {
        const x = p[i]!;
        p[i] = x + h;
        const up = referenceScore(f64, from);
        p[i] = x - h;
        const down = referenceScore(f64, from);
        p[i] = x;
        expect(grads.get(name)![i]!).toBeCloseTo((lambda * (up - down)) / (2 * h), 4);
        if (grads.get(name)![i] !== 0) checked++;
      }
    }
    // q_proj's ranks 1–3 and v_proj's rank 1, of A and of B, each value moved.
    expect(checked).toBe(3 * (6 + 5) + 1 * (6 + 3));
  });

  it("adds nothing where the tail of B is zero (a version's first round)", () => {
    const v = version(9);
    const params = byGraph(v);
    for (const m of MODULES) params.get(graphName(`${m.name}.lora_B.weight`))!.fill(0);
    const grads: TensorMap = new Map([...params].map(([k, t]) => [k, new Float32Array(t.length)]));
    tailPenalty({ gamma: 0.5, lambda: 1, minRank: 1 }, v, 1)(grads, params);
    for (const g of grads.values()) expect(g.every((x) => x === 0)).toBe(true);
  });

  it("uploads the change of each module's first ranks only", () => {
    const v = version(11);
    const trained = byGraph(version(12));
    // The change as the client's local result has it (by version key), cut as the upload is.
    const change = new Map([...v.tensors].map(([name, g]) => [name, trained.get(graphName(name))!.map((x, i) => x - g[i]!)]));
    const { tensors, shapes } = truncateVersion({ tensors: change, shapes: v.shapes, metadata: {} }, 3);
    // q_proj cut from 4 to 3 ranks; v_proj (rank 2) whole.
    expect(shapes.get(`${PREFIX}.q_proj.lora_A.weight`)).toEqual([3, 6]);
    expect(shapes.get(`${PREFIX}.q_proj.lora_B.weight`)).toEqual([5, 3]);
    expect(shapes.get(`${PREFIX}.v_proj.lora_A.weight`)).toEqual([2, 6]);
    expect(shapes.get(`${PREFIX}.v_proj.lora_B.weight`)).toEqual([3, 2]);
    const qa = `${PREFIX}.q_proj.lora_A.weight`;
    const qb = `${PREFIX}.q_proj.lora_B.weight`;
    for (let k = 0; k < 3; k++)
      for (let i = 0; i < 6; i++)
        expect(tensors.get(qa)![k * 6 + i]).toBeCloseTo(trained.get(graphName(qa))![k * 6 + i]! - v.tensors.get(qa)![k * 6 + i]!, 6);
    for (let o = 0; o < 5; o++)
      for (let k = 0; k < 3; k++)
        expect(tensors.get(qb)![o * 3 + k]).toBeCloseTo(trained.get(graphName(qb))![o * 4 + k]! - v.tensors.get(qb)![o * 4 + k]!, 6);
  });

  it("keeps a prune for later rounds, and a retried round trains at the rank its first try did", () => {
    const kept = new Map<string, Uint8Array>();
    const store = { get: (n: string) => kept.get(n) ?? null, put: (n: string, b: Uint8Array) => void kept.set(n, b) };
    expect(heldRank(store, 1)).toBe(Number.POSITIVE_INFINITY);
    holdRank(store, { round: 2, from: 8, to: 7 });
    expect(heldRank(store, 2)).toBe(8);
    expect(heldRank(store, 3)).toBe(7);
    holdRank(store, { round: 5, from: 7, to: 6 });
    expect(heldRank(store, 5)).toBe(7);
    expect(heldRank(store, 6)).toBe(6);
    // A record from a round still to come (a federation re-created under its id), or one that does not parse, is none.
    expect(heldRank(store, 4)).toBe(Number.POSITIVE_INFINITY);
    for (const text of ["{", "{}", '{"round": 1, "from": 2, "to": 3}', '{"round": 1, "from": 2, "to": 0}'])
      expect(heldRank({ get: () => new TextEncoder().encode(text) }, 9), text).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("a HetLoRA client's slice with self-pruning", () => {
  const config = tinyConfig({ heads: 4, kvHeads: 2 });
  const base = tinyWeights(config, 6);
  const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize));
  const examples = ["The fox trains.", "The dog averages.", "Each client trains.", "The server averages."].map((text) =>
    tokenizeExample({ text }, tok, 2, 32),
  );
  // Rank 4, γ 0.5: a prune halves the rank. The penalty outweighs the task a thousandfold and the steps are small
  // beside the version's factors, so a tail with a nonzero B shrinks in training.
  const m = v.parse(LoraConfig, {
    type: "lora",
    r: 4,
    alpha: 8,
    targetModules: ["q_proj", "v_proj"],
    hetero: { rule: "hetlora", ranks: {}, prune: { gamma: 0.5, lambda: 100 } },
  });
  /** Version 0's factors, B zero (a first round) or drawn as large as A's. */
  function versionOf(zeroB: boolean): TensorFile {
    const uniform = seededUniform(5);
    const tensors = new Map<string, Float32Array>();
    const shapes = new Map<string, number[]>();
    for (const [k, t] of initLoraParams(config, 4, ["q_proj", "v_proj"], 3)) {
      const name = `base_model.model.${k}`;
      const isB = k.endsWith(".lora_B.weight");
      tensors.set(name, isB && !zeroB ? t.map(() => uniform() - 0.5) : t);
      shapes.set(name, isB ? [t.length / 4, 4] : [4, t.length / 4]);
    }
    return { tensors, shapes, metadata: {} };
  }
  /** Runs round `round`'s slices (steps, then the upload) against `store`; the upload's lora_A rows. */
  async function uploadRank(global: TensorFile, round: number, store: Map<string, Uint8Array>): Promise<number> {
    let saved: Uint8Array | null = null;
    const resources = {
      runtime: ortNodeRuntime(),
      prompts: async () => ({ config }),
      tokenized: async () => ({ examples }),
      weights: async () => base,
      sessions: async () => undefined,
      trunkCache: undefined,
      store: { get: (n: string) => store.get(n) ?? null, put: (n: string, b: Uint8Array) => void store.set(n, b) },
    } as unknown as ClientResources;
    const ctx = {
      task: {
        clientId: "c1",
        round,
        proximalMu: 0,
        local: { steps: 2, batchSize: 2, lr: 1e-3, maxTokens: 32 },
        method: m,
        quant: "f32",
        seed: 1,
        federationSeed: 1,
        baseVersion: round - 1,
        downloadBytes: 0,
      },
      placement: "local",
      global,
      perInvocation: 8,
      save: (state: Uint8Array) => {
        saved = state;
      },
      resources,
    } as unknown as SliceContext<LoraConfig>;
    for (let i = 0; i < 2; i++) {
      const body = await loraClient.slice({ ...ctx, saved });
      if (body) {
        const file = decodeTensorFile(body, "upload");
        return Math.max(...[...file.shapes].filter(([n]) => n.endsWith(".lora_A.weight")).map(([, s]) => s[0]!));
      }
    }
    throw new Error("no upload after the round's steps");
  }

  it("keeps its rank where B's tail starts at zero, prunes a shrinking tail for good, and retries a round at its first rank", async () => {
    const store = new Map<string, Uint8Array>();
    expect(await uploadRank(versionOf(true), 1, store)).toBe(4);
    expect(store.size).toBe(0);
    expect(await uploadRank(versionOf(false), 2, store)).toBe(2);
    // Round 2 again (a retried upload): from rank 4 as its first try, to the same rank 2.
    expect(await uploadRank(versionOf(false), 2, store)).toBe(2);
    // Round 3 trains at the kept rank 2 and halves it again; from rank 4 it would upload 2.
    expect(await uploadRank(versionOf(false), 3, store)).toBe(1);
    // At minRank nothing is left to prune.
    expect(await uploadRank(versionOf(false), 4, store)).toBe(1);
  }, 120_000);
});
