// Qwen2-style attention biases (issue 16): q/k/v_proj biases as Qwen2Attention has them, and Llama's
// attention_bias (q/k/v/o_proj, as LlamaAttention); parsed, loaded, run, trained with LoRA and exported.
import { rmSync } from "node:fs";
import { floatOf } from "../../src/engine/quantize.ts";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { windowBatch } from "../../src/data/lm-windows.ts";
import { parseLlamaConfig, toHfConfig } from "../../src/engine/config.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import type { LoraPair, TrainSpec } from "../../src/engine/llama/graph.ts";
import { expectedTensors, linearName, linearShape } from "../../src/engine/llama/names.ts";
import { initLoraParams } from "../../src/engine/lora/init.ts";
import { loadPeftAdapter, loraPairs, loraScaling } from "../../src/engine/lora/peft.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import type { QuantMode } from "../../src/engine/quantize.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { ortWebRuntime } from "../../src/engine/runtimes/ort-web.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { adamW } from "../../src/engine/train/optimizer.ts";
import { TrainStep } from "../../src/engine/train/step.ts";
import { Trainer } from "../../src/engine/train/trainer.ts";
import { runCli } from "../cli/run-cli.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { tempDir, writeAdapterDir, writeHfModel } from "../fixtures/hf-model.ts";
import { PUBLISHED_CONFIGS } from "../../bench/lib/published-configs.ts";
import { effectiveWeights } from "../fixtures/quantized.ts";
import { tinyConfig, tinyLora, tinyWeights } from "../fixtures/tiny-llama.ts";
import { referenceHidden, referenceLogits, referenceLogprobs, referenceLoss } from "../reference/llama-f64.ts";

const root = tempDir("qwen2");
afterAll(() => rmSync(root, { recursive: true, force: true }));

const qwen = tinyConfig({ heads: 4, kvHeads: 2, tied: true, attentionBias: "qwen2" });
const qwenWeights = tinyWeights(qwen, 31);
const llamaBias = tinyConfig({ heads: 4, kvHeads: 2, attentionBias: "llama" });
const llamaBiasWeights = tinyWeights(llamaBias, 32);
const ids = [
  [1, 5, 9, 200, 17, 3, 250],
  [1, 44, 45, 46, 0, 0, 0],
];
const mask = [
  [1, 1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 0, 0, 0],
];
const withoutBiases = (w: ReadonlyMap<string, Float32Array>) => new Map([...w].filter(([n]) => !n.endsWith(".bias")));
const biasNames = (c: typeof qwen) => [...expectedTensors(c).keys()].filter((n) => n.endsWith(".bias"));

describe("configs", () => {
  const QKV = ["q_proj", "k_proj", "v_proj"];
  it("reads Qwen2's implicit q/k/v biases and Llama's attention_bias (q/k/v/o, as LlamaAttention)", () => {
    expect(qwen.linearBiases).toEqual(QKV);
    expect(llamaBias.linearBiases).toEqual([...QKV, "o_proj"]);
    expect(tinyConfig().linearBiases).toEqual([]);
    // Qwen2Attention ignores attention_bias: q/k/v always, o never.
    expect(parseLlamaConfig({ ...toHfConfig(qwen), attention_bias: false }).linearBiases).toEqual(QKV);
    expect(parseLlamaConfig({ ...toHfConfig(qwen), attention_bias: true }).linearBiases).toEqual(QKV);
    expect(biasNames(qwen)).toEqual([0, 1].flatMap((l) => QKV.map((m) => `model.layers.${l}.self_attn.${m}.bias`)));
    expect(expectedTensors(qwen).get("model.layers.0.self_attn.k_proj.bias")).toEqual([qwen.numKvHeads * qwen.headDim]);
    expect(expectedTensors(llamaBias).get("model.layers.1.self_attn.o_proj.bias")).toEqual([llamaBias.hiddenSize]);
  });

  it("round-trips through toHfConfig with Qwen2's architecture and no attention_bias field", () => {
    const hf = toHfConfig(qwen);
    expect(hf).toMatchObject({ model_type: "qwen2", architectures: ["Qwen2ForCausalLM"] });
    expect(hf).not.toHaveProperty("attention_bias");
    expect(parseLlamaConfig(hf)).toEqual(qwen);
    expect(toHfConfig(llamaBias)).toMatchObject({ architectures: ["LlamaForCausalLM"], attention_bias: true });
    expect(parseLlamaConfig(toHfConfig(llamaBias))).toEqual(llamaBias);
  });

  it("fills Qwen2Config's default max_position_embeddings and refuses sliding-window attention", () => {
    const { max_position_embeddings: _, ...rest } = toHfConfig(qwen);
    expect(parseLlamaConfig(rest).maxPositions).toBe(32768);
    expect(parseLlamaConfig({ ...rest, model_type: "llama" }).maxPositions).toBe(2048);
    expect(() => parseLlamaConfig({ ...rest, use_sliding_window: true })).toThrow(/use_sliding_window is not supported/);
    expect(() => parseLlamaConfig({ ...rest, model_type: "llama", mlp_bias: true })).toThrow(/mlp_bias is not supported/);
  });

  it("reads rope_scaling's legacy `type` key as transformers does, and refuses unimplemented types by name", () => {
    const base = toHfConfig(tinyConfig());
    expect(parseLlamaConfig({ ...base, rope_scaling: { type: "linear", factor: 2 } }).ropeScaling).toEqual({
      rope_type: "linear",
      factor: 2,
    });
    for (const type of ["dynamic", "yarn"])
      expect(() => parseLlamaConfig({ ...base, rope_scaling: { type, factor: 2 } })).toThrow(
        new RegExp(`rope_scaling.*"${type}" is not supported; fedflare implements "default", "linear", "llama3"`),
      );
  });

  // [name, layers, hidden, heads, kv heads, head_dim, intermediate, vocab, tied, biases, parameters].
  const published: [keyof typeof PUBLISHED_CONFIGS, number, number, number, number, number, number, number, boolean, string[], number][] = [
    ["HuggingFaceTB/SmolLM-135M", 30, 576, 9, 3, 64, 1536, 49152, true, [], 134_515_008],
    ["HuggingFaceTB/SmolLM-360M", 32, 960, 15, 5, 64, 2560, 49152, true, [], 361_821_120],
    ["TinyLlama/TinyLlama-1.1B-Chat-v1.0", 22, 2048, 32, 4, 64, 5632, 32000, false, [], 1_100_048_384],
    ["meta-llama/Llama-3.2-1B", 16, 2048, 32, 8, 64, 8192, 128256, true, [], 1_235_814_400],
    ["Qwen/Qwen2.5-0.5B", 24, 896, 14, 2, 64, 4864, 151936, true, QKV, 494_032_768],
  ];
  it.each(published)(
    "parses %s's published config.json into its shapes and published parameter count",
    (name, layers, hidden, heads, kv, headDim, inter, vocab, tied, biases, params) => {
      const c = parseLlamaConfig(PUBLISHED_CONFIGS[name]);
      expect(c).toMatchObject({
        numLayers: layers,
        hiddenSize: hidden,
        numHeads: heads,
        numKvHeads: kv,
        headDim,
        intermediateSize: inter,
        vocabSize: vocab,
        tieWordEmbeddings: tied,
        linearBiases: biases,
      });
      expect(linearShape(c, "k_proj")).toEqual([kv * headDim, hidden]);
      const shapes = [...expectedTensors(c).values()];
      expect(shapes.reduce((s, shape) => s + shape.reduce((a, b) => a * b, 1), 0)).toBe(params);
    },
  );

  it("keeps Llama-3.2-1B's llama3 rope scaling and Qwen2.5's rope_theta", () => {
    expect(parseLlamaConfig(PUBLISHED_CONFIGS["meta-llama/Llama-3.2-1B"])).toMatchObject({
      ropeTheta: 500000,
      maxPositions: 131072,
      ropeScaling: { rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    });
    expect(parseLlamaConfig(PUBLISHED_CONFIGS["Qwen/Qwen2.5-0.5B"])).toMatchObject({ ropeTheta: 1e6, rmsNormEps: 1e-6, ropeScaling: null });
  });
});

describe("a Qwen2-style checkpoint on disk", () => {
  const dir = writeHfModel(join(root, "model"), qwen, qwenWeights);

  it("loads with its biases", async () => {
    const m = await loadModel(dirSource(dir));
    expect(m.config).toEqual(qwen);
    expect([...m.weights.keys()].sort()).toEqual([...qwenWeights.keys()].sort());
    for (const n of biasNames(qwen)) expect(m.weights.get(n)).toEqual(qwenWeights.get(n));
  });

  it("refuses a checkpoint missing a bias, naming it, and a bias a bias-free config has no place for", async () => {
    const missing = "model.layers.1.self_attn.k_proj.bias";
    const without = new Map(qwenWeights);
    without.delete(missing);
    await expect(loadModel(dirSource(writeHfModel(join(root, "missing"), qwen, without)))).rejects.toMatchObject({
      code: "tensor_missing",
      message: expect.stringContaining(`"${missing}" [${qwen.numKvHeads * qwen.headDim}] is missing`),
    });
    const plain = tinyConfig({ heads: 4, kvHeads: 2, tied: true });
    const extra = new Map(tinyWeights(plain, 1)).set("model.layers.0.self_attn.q_proj.bias", new Float32Array(plain.hiddenSize));
    await expect(loadModel(dirSource(writeHfModel(join(root, "extra"), plain, extra)))).rejects.toMatchObject({
      code: "tensor_unexpected",
      message: expect.stringContaining('"model.layers.0.self_attn.q_proj.bias"'),
    });
  });
});

describe.each([
  ["Qwen2 (q/k/v biases), tied", qwen, qwenWeights],
  ["Llama attention_bias (q/k/v/o biases), untied", llamaBias, llamaBiasWeights],
] as const)("%s", (_, config, weights) => {
  const lora = tinyLora(config, ["q_proj", "k_proj", "v_proj", "o_proj"], 4, 8);

  it.each([
    ["f32", "ort-node"],
    ["int8", "ort-node"],
    ["f32", "ort-web"],
  ] as [QuantMode, string][])("%s logits on %s match the float64 reference (1e-4), with and without a LoRA adapter", async (quant, rt) => {
    const runtime = rt === "ort-web" ? ortWebRuntime() : ortNodeRuntime();
    const effective = effectiveWeights(weights, config, quant);
    for (const adapter of [undefined, lora]) {
      const model = await ForwardModel.create(runtime, config, weights, { kind: "forward", quant, lora: adapter });
      const { logits } = await model.run({ ids, mask });
      expect(maxAbsDiff(logits, referenceLogits(config, effective, { ids, mask }, adapter))).toBeLessThan(1e-4);
      // The biases matter: the same model without them is far off.
      expect(maxAbsDiff(logits, referenceLogits(config, withoutBiases(effective), { ids, mask }, adapter))).toBeGreaterThan(1e-2);
      await model.release();
    }
  });

  it("a generation step with a KV cache and a hidden graph agree with the reference", async () => {
    const rt = ortNodeRuntime();
    const prompt = ids[0]!;
    const step = await ForwardModel.create(rt, config, weights, { kind: "step", lora });
    const prefill = await step.run({ ids: [prompt.slice(0, -1)] });
    const next = await step.run({ ids: [prompt.slice(-1)], past: prefill.cache! });
    const V = config.vocabSize;
    const ref = referenceLogits(config, weights, { ids: [prompt] }, lora);
    expect(maxAbsDiff(next.logits, ref.subarray((prompt.length - 1) * V))).toBeLessThan(1e-4);
    const hidden = await ForwardModel.create(rt, config, weights, { kind: "hidden", after: 1 });
    expect(maxAbsDiff((await hidden.run({ ids, mask })).hidden!, referenceHidden(config, weights, { ids, mask }, 1))).toBeLessThan(1e-4);
    await Promise.all([step.release(), hidden.release()]);
  });

  const batch = windowBatch([
    [1, 10, 20, 30, 40, 50, 60, 70],
    [1, 11, 21, 31, 41, 51, 61, 71],
  ]);
  const rows = (a: readonly (readonly number[])[]) => a.flat();

  it.each(["f32", "int8"] as const)(
    "%s base: LoRA and bias gradients match float64 finite differences (rel ≤ 1e-3); a split graph agrees",
    async (quant) => {
      const modules = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;
      const bias = "model.layers.0.self_attn.v_proj.bias";
      const spec: TrainSpec = { lora: { r: 4, scaling: 2, modules: [...modules] }, full: [bias] };
      const params = new Map<string, Float32Array>([[bias, Float32Array.from(weights.get(bias)!)]]);
      for (const [name, p] of lora) params.set(`${name}.lora_A.weight`, p.a).set(`${name}.lora_B.weight`, p.b);
      const base = effectiveWeights(weights, config, quant, new Set([bias]));
      const lossAt = (p: ReadonlyMap<string, Float32Array>) => {
        const pairs: Map<string, LoraPair> = loraPairs(new Map([...p].filter(([n]) => n.includes("lora_"))), 4, 2);
        return referenceLoss(
          config,
          new Map(base).set(bias, p.get(bias)!),
          { ids: batch.ids },
          rows(batch.targets),
          rows(batch.lossWeights),
          pairs,
        );
      };
      const step = await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "train", spec, quant });
      const { loss, grads } = await step.run(batch, params);
      expect(loss).toBeCloseTo(lossAt(params), 4);
      const u = seededUniform(3);
      for (const name of [
        bias,
        ...[0, 1].flatMap((l) => modules.map((m) => `${linearName(l, m)}.lora_B.weight`)),
        `${linearName(1, "k_proj")}.lora_A.weight`,
      ]) {
        const g = grads.get(name)!;
        let diff = 0;
        let norm = 0;
        for (let k = 0; k < 6; k++) {
          const i = Math.floor(u() * g.length);
          const at = (d: number) => {
            const v = Float32Array.from(params.get(name)!);
            v[i]! += d;
            return lossAt(new Map(params).set(name, v));
          };
          const fd = (at(1e-4) - at(-1e-4)) / 2e-4;
          diff += (g[i]! - fd) ** 2;
          norm += fd ** 2;
        }
        expect(Math.sqrt(norm), `${name}: finite differences vanish`).toBeGreaterThan(1e-5);
        expect(Math.sqrt(diff / norm), name).toBeLessThan(1e-3);
      }
      // Split training above layer 1 from the trunk's hidden states gives the same LoRA gradients there.
      const splitSpec = { lora: { r: 4, scaling: 2, modules: [...modules], fromLayer: 1 } };
      const upperParams = new Map([...params].filter(([n]) => n.startsWith("model.layers.1.")));
      const e2e = await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "train", spec: splitSpec, quant });
      const trunk = await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "hidden", after: 1, quant });
      const upper = await TrainStep.create(ortNodeRuntime(), config, weights, { kind: "split", spec: splitSpec, quant, fromLayer: 1 });
      const whole = await e2e.run(batch, upperParams);
      const split = await upper.run({ ...batch, hidden: (await trunk.run({ ids: batch.ids })).hidden! }, upperParams);
      expect(Math.abs(split.loss - whole.loss)).toBeLessThan(1e-4);
      for (const [n, g] of whole.grads) expect(maxAbsDiff(split.grads.get(n)!, g) / Math.max(...g.map(Math.abs)), n).toBeLessThan(1e-4);
      await Promise.all([step.release(), e2e.release(), trunk.release(), upper.release()]);
    },
  );
});

describe("LoRA training on a Qwen2-style model", () => {
  it("lowers the loss, leaves the biases as they were, and exports a PEFT adapter that reloads and scores", async () => {
    const modules = ["q_proj", "v_proj"] as const;
    const dir = writeHfModel(join(root, "train-model"), qwen, qwenWeights);
    const { config, weights } = await loadModel(dirSource(dir));
    const before = new Map(biasNames(config).map((n) => [n, Float32Array.from(floatOf(weights.get(n)!))]));
    const step = await TrainStep.create(ortNodeRuntime(), config, weights, {
      kind: "train",
      spec: { lora: { r: 4, scaling: 2, modules: [...modules] } },
    });
    // The biases are frozen base tensors (PEFT's bias="none"): no graph input, so no gradient.
    expect(step.tensors.map((t) => t.name).filter((n) => !n.includes(".lora_"))).toEqual([]);
    const params = initLoraParams(config, 4, modules, 2);
    const trainer = new Trainer(step, params, { optimizer: adamW(), schedule: { lr: 1e-2, warmupSteps: 2, totalSteps: 25 }, clip: 1 });
    const batch = windowBatch([
      [1, 10, 20, 30, 40, 50, 60, 70],
      [1, 11, 21, 31, 41, 51, 61, 71],
    ]);
    const losses: number[] = [];
    for (let i = 0; i < 25; i++) losses.push((await trainer.update([batch])).loss);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.7);
    for (const [n, b] of before) expect(weights.get(n), n).toEqual(b);
    await step.release();

    const adapterConfig = { r: 4, alpha: 8, targetModules: [...modules], dropout: 0, useRslora: false, baseModel: dir };
    const pairs = loraPairs(params, 4, loraScaling(adapterConfig));
    const adapterDir = writeAdapterDir(join(root, "adapter"), { config: adapterConfig, pairs });
    const loaded = await loadPeftAdapter(dirSource(adapterDir), config);
    expect([...loaded.pairs.keys()].sort()).toEqual([...pairs.keys()].sort());
    for (const [n, p] of pairs) expect(loaded.pairs.get(n)).toEqual(p);

    const text = "The quick brown fox jumps over the lazy dog.";
    const run = await runCli(["score", "--model", dir, "--adapter", adapterDir, "--text", text]);
    expect(run.stderr).toBe("");
    const scored = JSON.parse(run.stdout) as { tokens: number[]; logprobs: number[] };
    const ref = referenceLogprobs(config, weights, scored.tokens, pairs);
    scored.logprobs.forEach((lp, i) => expect(Math.abs(lp - ref[i]!)).toBeLessThan(1e-4));
    const base = referenceLogprobs(config, weights, scored.tokens);
    expect(Math.max(...base.map((b, i) => Math.abs(b - ref[i]!)))).toBeGreaterThan(0.01);
  });
});
