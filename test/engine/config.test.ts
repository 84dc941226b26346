import { describe, expect, it } from "vitest";
import { parseLlamaConfig, toHfConfig } from "../../src/engine/config.ts";
import { ModelError } from "../../src/engine/errors.ts";
import { ropeInvFreq } from "../../src/engine/llama/rope.ts";
import { PUBLISHED_CONFIGS } from "../../bench/lib/published-configs.ts";

const base = {
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 300,
  rms_norm_eps: 1e-5,
  bos_token_id: 1,
  eos_token_id: 2,
};

describe("parseLlamaConfig", () => {
  it("fills transformers' defaults", () => {
    const { num_key_value_heads: _, ...noKv } = base;
    const c = parseLlamaConfig(noKv);
    expect(c).toMatchObject({
      numKvHeads: 4,
      headDim: 16,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      maxPositions: 2048,
      eosTokenIds: [2],
      ropeScaling: null,
    });
  });

  it("reads SmolLM-135M's config as it is published", () => {
    const smol = PUBLISHED_CONFIGS["HuggingFaceTB/SmolLM-135M"];
    expect(parseLlamaConfig(smol)).toMatchObject({ headDim: 64, numKvHeads: 3, tieWordEmbeddings: true, eosTokenIds: [0] });
  });

  it("round-trips through toHfConfig", () => {
    const c = parseLlamaConfig({ ...base, tie_word_embeddings: true, eos_token_id: [2, 3] });
    expect(parseLlamaConfig(toHfConfig(c))).toEqual(c);
  });

  const bad: [string, unknown, string, RegExp][] = [
    ["not an object", [1, 2], "config_invalid", /\(root\)/],
    ["missing hidden_size", { ...base, hidden_size: undefined }, "config_invalid", /hidden_size/],
    ["fractional heads", { ...base, num_attention_heads: 2.5 }, "config_invalid", /num_attention_heads/],
    ["zero layers", { ...base, num_hidden_layers: 0 }, "config_invalid", /num_hidden_layers/],
    ["string vocab", { ...base, vocab_size: "300" }, "config_invalid", /vocab_size/],
    ["negative eps", { ...base, rms_norm_eps: -1 }, "config_invalid", /rms_norm_eps/],
    ["heads not a multiple of kv heads", { ...base, num_key_value_heads: 3 }, "config_invalid", /multiple of num_key_value_heads/],
    [
      "hidden not divisible by heads",
      { ...base, hidden_size: 66, num_attention_heads: 4, num_key_value_heads: 4 },
      "config_invalid",
      /not divisible/,
    ],
    ["odd head_dim", { ...base, head_dim: 15 }, "config_invalid", /even/],
    ["eos outside vocab", { ...base, eos_token_id: 300 }, "config_invalid", /eos_token_id 300/],
    ["bos outside vocab", { ...base, bos_token_id: 1000 }, "config_invalid", /bos_token_id/],
    ["unknown rope scaling", { ...base, rope_scaling: { rope_type: "yarn", factor: 4 } }, "config_invalid", /rope_scaling/],
    ["other model type", { ...base, model_type: "gpt2" }, "config_unsupported", /gpt2/],
    ["gelu", { ...base, hidden_act: "gelu" }, "config_unsupported", /hidden_act/],
    ["mlp bias", { ...base, mlp_bias: true }, "config_unsupported", /mlp_bias/],
  ];
  it.each(bad)("refuses %s", (_, json, code, message) => {
    let err: unknown;
    try {
      parseLlamaConfig(json);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModelError);
    expect(err).toMatchObject({ code, message: expect.stringMatching(message) });
  });
});

describe("ropeInvFreq", () => {
  it("is theta^(-2i/d)", () => {
    const f = ropeInvFreq({ headDim: 8, ropeTheta: 10000, ropeScaling: null });
    expect(Array.from(f)).toEqual([1, 0.1, 0.01, 0.001].map((x, i) => expect.closeTo(x, 12 - i)));
  });

  it("divides by the factor under linear scaling", () => {
    const f = ropeInvFreq({ headDim: 4, ropeTheta: 100, ropeScaling: { rope_type: "linear", factor: 4 } });
    expect(Array.from(f)).toEqual([0.25, 0.025]);
  });

  it("applies llama3 scaling: high frequencies kept, low divided, middle interpolated", () => {
    const scaling = {
      rope_type: "llama3" as const,
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    };
    const plain = ropeInvFreq({ headDim: 128, ropeTheta: 500000, ropeScaling: null });
    const f = ropeInvFreq({ headDim: 128, ropeTheta: 500000, ropeScaling: scaling });
    expect(f[0]).toBe(plain[0]); // wavelength 2π < 8192/4
    expect(f[63]).toBeCloseTo(plain[63]! / 8, 15); // wavelength > 8192
    const mid = Array.from(plain).findIndex((x) => (2 * Math.PI) / x > 2048 && (2 * Math.PI) / x < 8192);
    const smooth = (8192 / ((2 * Math.PI) / plain[mid]!) - 1) / 3;
    expect(f[mid]).toBeCloseTo((1 - smooth) * (plain[mid]! / 8) + smooth * plain[mid]!, 15);
  });
});
