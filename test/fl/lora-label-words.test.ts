// LoRA on label words (src/fl/methods/lora/verbalizer.ts): the rows a client trains, the plan's graph, and
// the configs refused.
import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { tokenizeExample } from "../../src/data/examples.ts";
import { loadTokenizer } from "../../src/engine/tokenizer/load.ts";
import { LoraConfig } from "../../src/fl/methods/lora/config.ts";
import { loraPlan } from "../../src/fl/methods/lora/plan.ts";
import { labelWordTraining } from "../../src/fl/methods/lora/verbalizer.ts";
import { tinyTokenizerJson } from "../fixtures/hf-model.ts";
import { tinyConfig } from "../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize));
const base = { type: "lora", r: 2, alpha: 4, targetModules: ["q_proj"] };
const m = v.parse(LoraConfig, { ...base, labels: ["spam", "ham"], labelWords: ["the", "and"] });

describe("LoRA on label words", () => {
  it("trains each example's prompt, as the client cut it, followed by its gold label's word, only that word", () => {
    const words = labelWordTraining(m, tok, 24)!;
    const [the, and] = [" the", " and"].map((w) => tok.encode(w, { addSpecialTokens: false })[0]!);
    expect(words.vocabulary).toEqual([the, and]);
    const examples = [
      { prompt: "Subject: cheap pills now, click here for more and more and more", completion: " spam" },
      { prompt: "Subject: minutes", completion: " ham" },
    ];
    const tokenized = examples.map((e) => tokenizeExample(e, tok, 2, 24));
    const rows = words.examples(tokenized);
    rows.forEach((row, i) => {
      const prompt = tokenized[i]!.ids.slice(0, tokenized[i]!.trained.indexOf(1));
      expect(row.ids).toEqual([...prompt, i === 0 ? the : and]);
      expect(row.trained).toEqual([...prompt.map(() => 0), 1]);
    });
    // The first prompt was cut to fit the window; its row keeps the cut.
    expect(rows[0]!.ids.length).toBeLessThan(tok.encode(examples[0]!.prompt).length + 1);
    const plan = loraPlan(m, config, { offloaded: false, seed: 0, words });
    expect(plan.graph.spec.vocabulary).toEqual([the, and]);
    expect(plan.examples).toBe(words.examples);
    expect(labelWordTraining(v.parse(LoraConfig, base), tok, 24)).toBeNull();
  });

  it("refuses a completion that is none of the labels, a word of several tokens, one token for two labels", () => {
    const words = labelWordTraining(m, tok, 24)!;
    expect(() => words.examples([tokenizeExample({ prompt: "x", completion: " eggs" }, tok, 2, 24)])).toThrow(
      /an example's completion is none of the method's labels/,
    );
    expect(() => labelWordTraining({ ...m, labelWords: ["the", "quick"] }, tok, 24)).toThrow(
      /LoRA's label words are one token each in the model's vocabulary; " quick" is 5: choose another word in method.labelWords/,
    );
    expect(() => labelWordTraining({ ...m, labelWords: ["the", "the"] }, tok, 24)).toThrow(/name one token twice/);
    expect(() => v.parse(LoraConfig, { ...base, labelWords: ["the", "and"] })).toThrow(/one word per label/);
  });
});
