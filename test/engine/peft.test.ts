import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadPeftAdapter, loraScaling, moduleLora, parseAdapterConfig, patternKey, writePeftAdapter } from "../../src/engine/lora/peft.ts";
import { readSafetensors } from "../../src/protocol/safetensors.ts";
import { tempDir, writeAdapterDir } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyLora } from "../fixtures/tiny-llama.ts";

const model = tinyConfig({ heads: 4, kvHeads: 2, layers: 2 });
const adapterConfig = {
  r: 4,
  alpha: 8,
  targetModules: ["q_proj" as const, "v_proj" as const],
  dropout: 0.05,
  useRslora: false,
  baseModel: "tiny",
};
const pairs = tinyLora(model, ["q_proj", "v_proj"], 4, 8);

describe("PEFT adapter files", () => {
  it("writes PEFT's key names and shapes: lora_A [r, in], lora_B [out, r]", () => {
    const files = writePeftAdapter({ config: adapterConfig, pairs });
    const t = readSafetensors(files["adapter_model.safetensors"]).tensors;
    expect([...t.keys()].sort()).toEqual(
      [0, 1]
        .flatMap((l) =>
          ["q_proj", "v_proj"].flatMap((m) => ["A", "B"].map((w) => `base_model.model.model.layers.${l}.self_attn.${m}.lora_${w}.weight`)),
        )
        .sort(),
    );
    expect(t.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!.shape).toEqual([4, 64]);
    expect(t.get("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight")!.shape).toEqual([32, 4]);
    const cfg = JSON.parse(files["adapter_config.json"]);
    expect(cfg).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: 4,
      lora_alpha: 8,
      target_modules: ["q_proj", "v_proj"],
      bias: "none",
      use_rslora: false,
      lora_dropout: 0.05,
    });
  });

  it("reads back what it wrote", async () => {
    const dir = writeAdapterDir(join(tempDir("peft"), "a"), { config: adapterConfig, pairs });
    const back = await loadPeftAdapter(dirSource(dir), model);
    expect(back.config).toEqual({ ...adapterConfig, layers: null });
    for (const [name, p] of pairs) expect(back.pairs.get(name)).toEqual(p);
  });

  it("keeps layers_to_transform: LoRA only on the layers listed (a split client's upper layers)", async () => {
    const upper = new Map([...pairs].filter(([name]) => name.startsWith("model.layers.1.")));
    const dir = writeAdapterDir(join(tempDir("peft-layers"), "a"), { config: { ...adapterConfig, layers: [1] }, pairs: upper });
    const back = await loadPeftAdapter(dirSource(dir), model);
    expect(back.config.layers).toEqual([1]);
    expect([...back.pairs.keys()].sort()).toEqual([...upper.keys()].sort());
    const beyond = writeAdapterDir(join(tempDir("peft-layers"), "b"), { config: { ...adapterConfig, layers: [5] }, pairs: new Map() });
    await expect(loadPeftAdapter(dirSource(beyond), model)).rejects.toMatchObject({
      code: "adapter_invalid",
      message: expect.stringMatching(/layer 5/),
    });
  });

  it("matches rank_pattern and alpha_pattern keys as PEFT's get_pattern_key: the name or a suffix after a dot, the first key first", () => {
    const q0 = "model.layers.0.self_attn.q_proj";
    const q10 = "model.layers.10.self_attn.q_proj";
    expect(patternKey({ q_proj: 2 }, q0)).toBe("q_proj");
    expect(patternKey({ "layers.0.self_attn.q_proj": 2 }, q0)).toBe("layers.0.self_attn.q_proj");
    expect(patternKey({ "layers.0.self_attn.q_proj": 2 }, q10)).toBeUndefined();
    expect(patternKey({ "0.self_attn.q_proj": 2 }, q10)).toBeUndefined();
    expect(patternKey({ proj: 2 }, q0)).toBeUndefined();
    expect(patternKey({ [q0]: 2 }, q0)).toBe(q0);
    // A '.' is a regular expression's: it matches any character, as in PEFT.
    expect(patternKey({ "layers.0.self_attn.q.proj": 2 }, q0)).toBe("layers.0.self_attn.q.proj");
    expect(patternKey({ q_proj: 2, "layers.0.self_attn.q_proj": 8 }, q0)).toBe("q_proj");
    // Keys as PEFT's documentation writes them: anchored, escaped, with a wildcard.
    expect(patternKey({ "^model.layers.0.self_attn.q_proj": 2 }, q0)).toBe("^model.layers.0.self_attn.q_proj");
    expect(patternKey({ "^layers.0.self_attn.q_proj": 2 }, q0)).toBeUndefined();
    expect(patternKey({ "layers\\.\\d\\.self_attn\\.q_proj": 2 }, q10)).toBeUndefined();
    expect(patternKey({ "layers\\.\\d+\\.self_attn\\.q_proj": 2 }, q10)).toBe("layers\\.\\d+\\.self_attn\\.q_proj");
    expect(patternKey({ "layers.1.*q_proj": 2 }, q10)).toBe("layers.1.*q_proj");
    const c = { ...adapterConfig, rankPattern: { "layers.0.self_attn.q_proj": 2, v_proj: 6 }, alphaPattern: { q_proj: 3 } };
    expect(moduleLora(c, q0)).toEqual({ r: 2, alpha: 3, scaling: 1.5 });
    expect(moduleLora(c, "model.layers.1.self_attn.q_proj")).toEqual({ r: 4, alpha: 3, scaling: 0.75 });
    expect(moduleLora(c, "model.layers.1.self_attn.v_proj")).toEqual({ r: 6, alpha: 8, scaling: 8 / 6 });
    expect(moduleLora({ ...c, useRslora: true }, q0).scaling).toBeCloseTo(3 / Math.sqrt(2), 12);
  });

  it("scales by alpha / r, or alpha / sqrt(r) with rsLoRA", () => {
    expect(loraScaling({ r: 16, alpha: 32, useRslora: false })).toBe(2);
    expect(loraScaling({ r: 16, alpha: 32, useRslora: true })).toBe(8);
  });

  const good = { peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj"] };
  it.each([
    ["another PEFT type", { ...good, peft_type: "IA3" }, /peft_type/],
    ["rank 0", { ...good, r: 0 }, /"r"/],
    ["an unknown target module", { ...good, target_modules: ["c_attn"] }, /target_modules/],
    ["a bias", { ...good, bias: "all" }, /bias/],
    ["DoRA", { ...good, use_dora: true }, /use_dora/],
    ["a rank pattern key with a group", { ...good, rank_pattern: { "(q|v)_proj": 8 } }, /rank_pattern.*without groups, classes or braces/],
    ["a rank pattern key of many quantifiers", { ...good, rank_pattern: { "q.*.*.*.*_proj": 8 } }, /at most three quantifiers/],
    ["a rank pattern key that is no regular expression", { ...good, rank_pattern: { "q_proj*+": 8 } }, /a valid regular expression/],
    ["an alpha pattern of 0", { ...good, alpha_pattern: { q_proj: 0 } }, /alpha_pattern/],
  ])("refuses an adapter_config.json with %s", (_, json, message) => {
    expect(() => parseAdapterConfig(json)).toThrow(
      expect.objectContaining({ code: "adapter_invalid", message: expect.stringMatching(message) }),
    );
  });

  it.each([
    ["a rank that does not match the tensors", { ...adapterConfig, r: 8 }, "tensor_shape", /lora_A.*\[4,64\].*\[8,64\]/],
    ["a target module without tensors", { ...adapterConfig, targetModules: ["q_proj", "v_proj", "k_proj"] }, "tensor_missing", /k_proj/],
    ["tensors for a module not in target_modules", { ...adapterConfig, targetModules: ["q_proj"] }, "tensor_unexpected", /v_proj/],
  ] as const)("refuses %s", async (_, cfg, code, message) => {
    const dir = join(tempDir("peft-bad"), "a");
    mkdirSync(dir);
    const files = writePeftAdapter({ config: adapterConfig, pairs });
    writeFileSync(join(dir, "adapter_model.safetensors"), files["adapter_model.safetensors"]);
    writeFileSync(
      join(dir, "adapter_config.json"),
      writePeftAdapter({ config: { ...cfg, targetModules: [...cfg.targetModules] }, pairs: new Map() })["adapter_config.json"],
    );
    await expect(loadPeftAdapter(dirSource(dir), model)).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  });
});
