// LoRA and offsite-tuning on label words (src/fl/methods/shared/label-word-training.ts): the rows a client
// trains, the plans' graphs, and the configs refused.
import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { tokenizeExample } from "../../src/data/examples.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { labelRows, promptsAndGold } from "../../src/engine/train/evaluate.ts";
import { LoraConfig } from "../../src/fl/methods/lora/config.ts";
import { loraPlan } from "../../src/fl/methods/lora/plan.ts";
import { OffsiteConfig } from "../../src/fl/methods/offsite/config.ts";
import { offsitePlan } from "../../src/fl/methods/offsite/plan.ts";
import { labelWordTraining } from "../../src/fl/methods/shared/label-word-training.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig } from "../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize));
const base = { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] };
const m = v.parse(LoraConfig, { ...base, labels: ["spam", "ham"], labelWords: ["the", "and"] });

describe("LoRA on label words", () => {
  it("takes a completion's label only where the label's ids are the whole completion, up to EOS", () => {
    const row = (completion: number[]) => ({ ids: [1, 2, ...completion], trained: [0, 0, ...completion.map(() => 1)] });
    // Label 0's ids [5] begin label 1's [5, 6]: " 10" is not " 1".
    expect(promptsAndGold([row([5, 6, 9]), row([5, 9]), row([5, 6])], [[5], [5, 6]])).toEqual({
      prompts: [
        [1, 2],
        [1, 2],
        [1, 2],
      ],
      gold: [1, 0, 1],
    });
    expect(() => promptsAndGold([row([5, 7, 9])], [[5], [5, 6]])).toThrow(/none of the method's labels/);
  });

  it("trains each example's prompt, cut as scoring cuts it, followed by its gold label's word, only that word", () => {
    const words = labelWordTraining(m, tok, 24, "LoRA")!;
    const [the, and] = [" the", " and"].map((w) => tok.encode(w, { addSpecialTokens: false })[0]!);
    expect(words.vocabulary).toEqual([the, and]);
    const examples = [
      { prompt: "Subject: cheap pills now, click here for more and more and more", completion: " spam" },
      { prompt: "Subject: minutes", completion: " ham" },
    ];
    const rows = words.examples(examples);
    // Each row is the one held-out scoring makes for the gold word (labelRows), the word alone trained.
    const scoring = labelRows(
      examples.map((e) => tok.encode(e.prompt)),
      [[the!], [and!]],
      24,
    );
    expect(rows).toEqual([scoring[0], scoring[3]]);
    rows.forEach((row, i) => {
      expect(row.ids.at(-1)).toBe(i === 0 ? the : and);
      expect(row.trained).toEqual([...row.ids.slice(1).map(() => 0), 1]);
    });
    // The first prompt was cut to fit the window, not by the label's length: " spam" and EOS take 5 tokens,
    // more than the window's eighth, so the tokenized training example cut it shorter.
    expect(rows[0]!.ids.length).toBe(24 - 3 + 1);
    expect(tokenizeExample(examples[0]!, tok, 2, 24).trained.indexOf(1)).toBe(24 - 5);
    const plan = loraPlan(m, config, { offloaded: false, seed: 0, words });
    expect(plan.graph.spec.vocabulary).toEqual([the, and]);
    expect(plan.examples).toBe(words.examples);
    expect(labelWordTraining(v.parse(LoraConfig, base), tok, 24, "LoRA")).toBeNull();
  });

  it("offsite-tuning's plan trains the same word rows, its softmax over the words, its adapter's layers in full", () => {
    const deep = tinyConfig({ heads: 4, kvHeads: 2, layers: 4 });
    const offsite = { type: "offsite", bottom: 1, top: 1, middle: 0 };
    const o = v.parse(OffsiteConfig, { ...offsite, labels: ["spam", "ham"], labelWords: ["the", "and"] });
    const words = labelWordTraining(o, tok, 24, "offsite-tuning")!;
    const plan = offsitePlan(o, deep, words);
    expect(plan.graph.spec.vocabulary).toEqual(words.vocabulary);
    expect(plan.examples).toBe(words.examples);
    expect(plan.layers).toEqual([0, 3]);
    expect(plan.graph.spec.full!.every((name) => /^model\.layers\.[03]\./.test(name))).toBe(true);
    const plain = offsitePlan(v.parse(OffsiteConfig, offsite), deep);
    expect(plain.graph.spec.vocabulary).toBeUndefined();
    expect(plain.examples).toBeUndefined();
    expect(plain.graph.spec.full).toEqual(plan.graph.spec.full);
    expect(() => v.parse(OffsiteConfig, { ...offsite, labelWords: ["the", "and"] })).toThrow(/one word per label/);
    expect(() => labelWordTraining({ ...o, labelWords: ["the", "quick"] }, tok, 24, "offsite-tuning")).toThrow(
      /offsite-tuning's label words are one token each/,
    );
  });

  it("refuses a completion that is none of the labels, a word of several tokens, one token for two labels", () => {
    const words = labelWordTraining(m, tok, 24, "LoRA")!;
    expect(() => words.examples([{ prompt: "x", completion: " eggs" }])).toThrow(/label "eggs" is not one of \["spam","ham"\]/);
    expect(() => words.examples([{ text: "x" }])).toThrow(/trains prompt\/completion pairs; a record here is a plain text/);
    expect(() => labelWordTraining({ ...m, labelWords: ["the", "quick"] }, tok, 24, "LoRA")).toThrow(
      /LoRA's label words are one token each in the model's vocabulary; " quick" is 5: choose another word in method.labelWords/,
    );
    expect(() => labelWordTraining({ ...m, labelWords: ["the", "the"] }, tok, 24, "LoRA")).toThrow(/name one token twice/);
    expect(() => v.parse(LoraConfig, { ...base, labelWords: ["the", "and"] })).toThrow(/one word per label/);
    expect(() => v.parse(LoraConfig, { ...base, labels: ["spam", "spam"] })).toThrow(/method.labels are distinct/);
  });
});
