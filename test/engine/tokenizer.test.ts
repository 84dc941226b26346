import { describe, expect, it } from "vitest";
import { byteToUnicode, trainByteLevelBpe } from "../../src/engine/tokenizer/byte-level-bpe.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { TOKENIZER_TEXT } from "../fixtures/hf-model.ts";

describe("byte-level BPE", () => {
  it("maps the 256 bytes to 256 distinct characters, printable ASCII to itself", () => {
    const m = byteToUnicode();
    expect(new Set(m).size).toBe(256);
    expect(m[65]).toBe("A");
    expect(m[32]).toBe("Ġ"); // space, as in GPT-2's vocabulary
    expect(m[10]).toBe("Ċ");
  });

  const json = trainByteLevelBpe(TOKENIZER_TEXT, {
    vocabSize: 320,
    specialTokens: ["<unk>", "<s>", "</s>"],
    bosToken: "<s>",
    minFrequency: 1,
  });
  const tok = loadTokenizer(json);

  it("trains merges up to the vocabulary size, deterministically", () => {
    const model = json.model as { vocab: Record<string, number>; merges: [string, string][] };
    expect(Object.keys(model.vocab)).toHaveLength(320);
    expect(model.merges).toHaveLength(320 - 256 - 3);
    expect(
      trainByteLevelBpe(TOKENIZER_TEXT, { vocabSize: 320, specialTokens: ["<unk>", "<s>", "</s>"], bosToken: "<s>", minFrequency: 1 }),
    ).toEqual(json);
    // Every merge joins two symbols already in the vocabulary, into the next id.
    model.merges.forEach(([a, b], i) => {
      expect(model.vocab[a]).toBeLessThan(259 + i);
      expect(model.vocab[b]).toBeLessThan(259 + i);
      expect(model.vocab[a + b]).toBe(259 + i);
    });
  });

  it("round-trips any text through @huggingface/tokenizers, with BOS added", () => {
    for (const text of [...TOKENIZER_TEXT, "unseen wörds 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \n\t tabs", ""]) {
      const ids = tok.encode(text);
      expect(ids[0]).toBe(1);
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
    }
    expect(tok.encode("the fox", { addSpecialTokens: false })[0]).not.toBe(1);
  });

  it("compresses the training text below one token per byte", () => {
    const text = TOKENIZER_TEXT[1]!;
    expect(tok.encode(text).length).toBeLessThan(new TextEncoder().encode(text).length * 0.8);
  });
});
