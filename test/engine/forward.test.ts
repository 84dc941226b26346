import { describe, expect, it } from "vitest";
import { ForwardModel } from "../../src/engine/forward.ts";
import type { GraphKind, LoraPair } from "../../src/engine/llama/graph.ts";
import { quantizeInt8 } from "../../src/engine/quantize.ts";
import type { Runtime } from "../../src/engine/runtime.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../../src/engine/runtimes/ort-web.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { tinyConfig, tinyLora, tinyWeights, type TinyOptions } from "../fixtures/tiny-llama.ts";
import { referenceLogits } from "../reference/llama-f64.ts";

const ids = [
  [1, 5, 9, 200, 17, 3, 250],
  [1, 44, 45, 46, 0, 0, 0],
];
const mask = [
  [1, 1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 0, 0, 0],
];

const runtimes: [string, () => Runtime][] = [
  ["ort-node", () => ortNodeRuntime()],
  ["ort-web", () => ortWebRuntime()],
];

const cases: [string, TinyOptions, boolean][] = [
  ["GQA, untied head", { heads: 4, kvHeads: 2, tied: false }, false],
  ["MHA, tied head", { heads: 4, kvHeads: 4, tied: true }, false],
  ["MQA (one kv head), untied, 3 layers", { heads: 4, kvHeads: 1, layers: 3 }, false],
  ["GQA with LoRA on q,v,down", { heads: 4, kvHeads: 2 }, true],
];

describe.each(runtimes)("Llama forward graph on %s", (_, makeRuntime) => {
  it.each(cases)("matches the float64 reference: %s", async (_name, opts, withLora) => {
    const config = tinyConfig(opts);
    const weights = tinyWeights(config, 11);
    const lora: Map<string, LoraPair> | undefined = withLora ? tinyLora(config, ["q_proj", "v_proj", "down_proj"], 4, 8) : undefined;
    const model = await ForwardModel.create(makeRuntime(), config, weights, { kind: "forward", lora });
    const { logits } = await model.run({ ids, mask });
    const ref = referenceLogits(config, weights, { ids, mask }, lora);
    const V = config.vocabSize;
    const T = ids[0]!.length;
    // Padded positions are compared too: they attend only to earlier real tokens, as in transformers.
    expect(maxAbsDiff(logits, ref)).toBeLessThan(1e-4);
    // The logits are not trivially equal across rows: the check has something to find.
    expect(maxAbsDiff(logits.subarray(0, T * V), logits.subarray(T * V))).toBeGreaterThan(0.1);
    await model.release();
  });

  it("computes per-token NLL equal to -log softmax(logits)[target]", async () => {
    const config = tinyConfig();
    const weights = tinyWeights(config, 5);
    const model = await ForwardModel.create(makeRuntime(), config, weights, { kind: "forward", nll: true });
    const targets = ids.map((row) => [...row.slice(1), 0]);
    const { logits, nll } = await model.run({ ids, mask, targets });
    const V = config.vocabSize;
    const expected = targets.flat().map((t, i) => {
      const row = logits.subarray(i * V, (i + 1) * V);
      const max = Math.max(...row);
      const z = row.reduce((s, x) => s + Math.exp(x - max), 0);
      return -(row[t]! - max - Math.log(z));
    });
    expect(maxAbsDiff(nll!, expected)).toBeLessThan(1e-4);
    await model.release();
  });
});

describe("runtime parity", () => {
  it("ORT-web and ORT-node give the same logits (1e-4) on the same graph", async () => {
    const config = tinyConfig({ heads: 4, kvHeads: 2 });
    const weights = tinyWeights(config, 2);
    const [web, node] = await Promise.all([
      ForwardModel.create(ortWebRuntime(), config, weights),
      ForwardModel.create(ortNodeRuntime(), config, weights),
    ]);
    const a = await web.run({ ids, mask });
    const b = await node.run({ ids, mask });
    expect(maxAbsDiff(a.logits, b.logits)).toBeLessThan(1e-4);
  });
});

describe("input validation", () => {
  it("refuses ids outside the vocabulary, ragged rows and overlong sequences", async () => {
    const config = tinyConfig();
    const model = await ForwardModel.create(ortNodeRuntime(), config, tinyWeights(config));
    await expect(model.run({ ids: [[1, config.vocabSize]] })).rejects.toMatchObject({
      code: "input_invalid",
      message: expect.stringMatching(/outside the vocabulary/),
    });
    await expect(model.run({ ids: [[1, 2], [3]] })).rejects.toMatchObject({
      code: "input_invalid",
      message: expect.stringMatching(/different lengths/),
    });
    await expect(model.run({ ids: [new Array(config.maxPositions + 1).fill(1)] })).rejects.toMatchObject({
      code: "input_invalid",
      message: expect.stringMatching(/max_position_embeddings/),
    });
  });
});

describe("a forward graph with its tensors as inputs (for zeroth-order methods)", () => {
  it("gives the logits of the same values baked in as weights or as a frozen LoRA adapter, run after run", async () => {
    const c = tinyConfig({ heads: 4, kvHeads: 2 });
    const w = tinyWeights(c, 61);
    const ids = [[1, 40, 41, 42, 43]];
    const lora = tinyLora(c, ["q_proj", "v_proj"], 4, 8);
    const loraParams = new Map(
      [...lora].flatMap(
        ([name, p]) =>
          [
            [`${name}.lora_A.weight`, p.a],
            [`${name}.lora_B.weight`, p.b],
          ] as const,
      ),
    );
    const scaling = [...lora.values()][0]!.scaling;
    const viaInputs = await ForwardModel.create(ortNodeRuntime(), c, w, {
      kind: "forward",
      inputs: { lora: { r: 4, scaling, modules: ["q_proj", "v_proj"], dropout: 0.5 } },
    });
    const baked = await ForwardModel.create(ortNodeRuntime(), c, w, { kind: "forward", lora });
    expect((await viaInputs.run({ ids, params: loraParams })).logits).toEqual((await baked.run({ ids })).logits);
    // A second run with other values: no session rebuilt, other logits.
    const moved = new Map([...loraParams].map(([k, t]) => [k, t.map((x) => x * 2)]));
    expect(maxAbsDiff((await viaInputs.run({ ids, params: moved })).logits, (await baked.run({ ids })).logits)).toBeGreaterThan(1e-4);
    await expect(viaInputs.run({ ids })).rejects.toThrow(/forward: ".*lora_A\.weight" needs \d+ values/);

    const name = "model.layers.1.mlp.down_proj.weight";
    const full = await ForwardModel.create(ortNodeRuntime(), c, w, { kind: "forward", inputs: { full: [name] } });
    const changed = w.get(name)!.map((x) => x + 0.01);
    const bakedFull = await ForwardModel.create(ortNodeRuntime(), c, new Map(w).set(name, changed));
    expect((await full.run({ ids, params: new Map([[name, changed]]) })).logits).toEqual((await bakedFull.run({ ids })).logits);
  });
});

describe("a forward graph with a soft prompt as input (for black-box prompt tuning)", () => {
  it("scores the tokens after the prompt as the float64 reference with that prefix does", async () => {
    const c = tinyConfig({ heads: 4, kvHeads: 2 });
    const w = tinyWeights(c, 62);
    const ids = [[1, 40, 41, 42, 43]];
    const targets = [[40, 41, 42, 43, 2]];
    const prompt = Float32Array.from({ length: 3 * c.hiddenSize }, (_, i) => Math.sin(i) * 0.1);
    const model = await ForwardModel.create(ortNodeRuntime(), c, w, { kind: "forward", nll: true, inputs: { softPromptTokens: 3 } });
    const { nll } = await model.run({ ids, targets, params: new Map([["soft_prompt", prompt]]) });
    expect(nll).toHaveLength(3 + 5);
    const logits = referenceLogits(c, w, { ids, prefix: prompt });
    const V = c.vocabSize;
    for (let t = 0; t < 5; t++) {
      const row = logits.subarray((3 + t) * V, (4 + t) * V);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
      expect(nll![3 + t]).toBeCloseTo(lse - row[targets[0]![t]!]!, 4);
    }
  });

  it("inline: ids past the vocabulary are the prompt's tokens, wherever the row puts them", async () => {
    const c = tinyConfig({ heads: 4, kvHeads: 2 });
    const w = tinyWeights(c, 63);
    const V = c.vocabSize;
    const H = c.hiddenSize;
    // A soft prompt equal to the embeddings of tokens 50, 51, 52 must score as those tokens do.
    const table = w.get("model.embed_tokens.weight")!;
    const prompt = Float32Array.from({ length: 3 * H }, (_, i) => table[(50 + Math.floor(i / H)) * H + (i % H)]!);
    const params = new Map([["soft_prompt", prompt]]);
    const targets = [[40, 41, 42, 43, 44, 2]];
    const inline = await ForwardModel.create(ortNodeRuntime(), c, w, {
      kind: "forward",
      nll: true,
      inputs: { softPromptTokens: 3, softPromptInline: true },
    });
    const plain = await ForwardModel.create(ortNodeRuntime(), c, w, { kind: "forward", nll: true });
    const got = (await inline.run({ ids: [[1, 40, V, V + 1, V + 2, 41]], targets, params })).nll!;
    expect(got).toHaveLength(6);
    expect(maxAbsDiff(got, (await plain.run({ ids: [[1, 40, 50, 51, 52, 41]], targets })).nll!)).toBeLessThan(1e-5);
    // Another prompt changes what follows it, not what comes before it (causal).
    const other = (
      await inline.run({ ids: [[1, 40, V, V + 1, V + 2, 41]], targets, params: new Map([["soft_prompt", prompt.map((x) => -x)]]) })
    ).nll!;
    expect(maxAbsDiff(other.subarray(0, 2), got.subarray(0, 2))).toBeLessThan(1e-6);
    expect(maxAbsDiff(other.subarray(2), got.subarray(2))).toBeGreaterThan(1e-3);
    // Placed first, it is the prefix prompt.
    const prefix = await ForwardModel.create(ortNodeRuntime(), c, w, { kind: "forward", nll: true, inputs: { softPromptTokens: 3 } });
    const asPrefix = (await prefix.run({ ids: [[1, 40, 41]], targets: [[40, 41, 42]], params })).nll!;
    const asInline = (await inline.run({ ids: [[V, V + 1, V + 2, 1, 40, 41]], targets: [[0, 0, 0, 40, 41, 42]], params })).nll!;
    expect(maxAbsDiff(asInline.subarray(3), asPrefix.subarray(3))).toBeLessThan(1e-5);
    // The int8 base reads its token rows from the quantized table, the prompt as given: a prompt of the
    // dequantized rows of tokens 50-52 scores as those tokens.
    const q = quantizeInt8(table, V, H);
    const dequantized = Float32Array.from(prompt, (_, i) => q.q[50 * H + i]! * q.scale[50 + Math.floor(i / H)]!);
    const q8 = await ForwardModel.create(ortNodeRuntime(), c, w, {
      kind: "forward",
      quant: "int8",
      nll: true,
      inputs: { softPromptTokens: 3, softPromptInline: true },
    });
    const q8Plain = await ForwardModel.create(ortNodeRuntime(), c, w, { kind: "forward", quant: "int8", nll: true });
    const q8Got = (await q8.run({ ids: [[1, 40, V, V + 1, V + 2, 41]], targets, params: new Map([["soft_prompt", dequantized]]) })).nll!;
    expect(maxAbsDiff(q8Got, (await q8Plain.run({ ids: [[1, 40, 50, 51, 52, 41]], targets })).nll!)).toBeLessThan(1e-5);
    await expect(inline.run({ ids: [[1, V + 3]], targets: [[0, 0]], params })).rejects.toThrow(
      /outside the vocabulary \[0, \d+\) and the soft prompt's ids/,
    );
    await expect(plain.run({ ids: [[1, V]], targets: [[0, 0]] })).rejects.toThrow(/outside the vocabulary \[0, \d+\)$/);
  });
});

describe("graph kinds", () => {
  it("makes the option combinations the builder cannot honour type errors (each line below fails to compile)", () => {
    const spec = { full: ["model.norm.weight"] };
    const illegal: GraphKind[] = [
      // @ts-expect-error: a graph either trains its tensors or takes them as inputs, not both
      { kind: "train", spec, inputs: spec },
      // @ts-expect-error: a forward graph has no loss to add a distillation term to
      { kind: "forward", inputs: { distill: { afterLayer: 0, weight: 1 } } },
      // @ts-expect-error: an inline soft prompt is a forward graph's (a training graph's prompt is a prefix)
      { kind: "train", spec: { softPromptTokens: 3, softPromptInline: true } },
      // @ts-expect-error: an inline soft prompt needs its length
      { kind: "forward", inputs: { softPromptInline: true } },
      // @ts-expect-error: a generation step takes no soft prompt (prefill with the prompt first)
      { kind: "step", inputs: { softPromptTokens: 3 } },
      // @ts-expect-error: a split graph starts from hidden states: no soft prompt before the tokens
      { kind: "split", fromLayer: 1, spec: { softPromptTokens: 3 } },
      // @ts-expect-error: layerIndices pick an emulator's layers, not those above a cut
      { kind: "split", fromLayer: 1, spec, layerIndices: [0, 1] },
      // @ts-expect-error: nor those below a hidden graph's output
      { kind: "hidden", after: 1, layerIndices: [0, 1] },
      // @ts-expect-error: a hidden graph has no head: it cannot score
      { kind: "hidden", after: 1, nll: true },
    ];
    expect(illegal).toHaveLength(9);
  });
});
