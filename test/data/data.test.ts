import { describe, expect, it } from "vitest";
import { exampleBatch, tokenizeExample } from "../../src/data/examples.ts";
import { parseJsonl } from "../../src/data/jsonl.ts";
import { packWindows, shuffled, windowBatch } from "../../src/data/lm-windows.ts";
import { splitEvery } from "../../src/data/split.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import type { TextTokenizer } from "../../src/engine/tokenizer/load.ts";

/** One id per character (BOS 1 when special tokens are added): easy to count by hand. */
const charTok: TextTokenizer = {
  encode: (t, o) => [...(o?.addSpecialTokens === false ? [] : [1]), ...[...t].map((ch) => ch.charCodeAt(0))],
  decode: (ids) => String.fromCharCode(...ids),
};

describe("JSONL records", () => {
  it("reads text and prompt/completion records, skipping blank lines", () => {
    expect(parseJsonl('{"text":"a"}\n\n{"prompt":"q","completion":"r"}\n')).toEqual([{ text: "a" }, { prompt: "q", completion: "r" }]);
  });
  it.each([
    ["", /no records/],
    ['{"text":""}', /:1:/],
    ['{"text":"a","extra":1}', /:1: expected/],
    ['{"completion":"x"}', /:1: expected/],
    ['{"text":"a"}\n[1]', /:2: expected/],
  ])("refuses %j", (text, message) => expect(() => parseJsonl(text, "f.jsonl")).toThrow(message));
});

describe("examples", () => {
  it("trains on the completion and EOS only for a pair, on every token after BOS for a text", () => {
    const pair = tokenizeExample({ prompt: "ab", completion: "cd" }, charTok, 2, 100);
    expect(pair.ids).toEqual([1, 97, 98, 99, 100, 2]);
    expect(pair.trained).toEqual([0, 0, 0, 1, 1, 1]);
    const text = tokenizeExample({ text: "xy" }, charTok, 2, 100);
    expect(text.ids).toEqual([1, 120, 121, 2]);
    expect(text.trained).toEqual([0, 1, 1, 1]);
    expect(tokenizeExample({ text: "xyzw" }, charTok, 2, 3).ids).toEqual([1, 120, 121]);
  });

  it("cuts a long pair's prompt, not its completion, so the trained tokens survive", () => {
    const cut = tokenizeExample({ prompt: "abcdef", completion: "xy" }, charTok, 2, 5);
    expect(cut.ids).toEqual([1, 97, 120, 121, 2]);
    expect(cut.trained).toEqual([0, 0, 1, 1, 1]);
    // With room for more, a long prompt loses its middle: the head and the last quarter of the room stay.
    const middle = tokenizeExample({ prompt: "abcdefghijkl", completion: "x" }, charTok, 2, 11);
    expect(middle.ids).toEqual([1, ..."abcdef", ..."kl", ..."x", 2].map((c) => (typeof c === "string" ? c.charCodeAt(0) : c)));
    expect(middle.trained).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    // Completions up to an eighth of the window leave the prompt the same room: a label's length cannot
    // show in where the prompt ends (2 and 3 completion tokens: the prompt keeps 21 of 24 either way).
    const long = "abcdefghijklmnopqrstuvwxyz";
    const [short, longer] = ["x", "xy"].map((completion) => tokenizeExample({ prompt: long, completion }, charTok, 2, 24));
    expect(short!.trained.indexOf(1)).toBe(21);
    expect(longer!.trained.indexOf(1)).toBe(21);
    expect(short!.ids.slice(0, 21)).toEqual(longer!.ids.slice(0, 21));
    // A completion longer than the window keeps the first prompt token and is cut at the end.
    expect(tokenizeExample({ prompt: "ab", completion: "wxyz" }, charTok, 2, 3)).toEqual({ ids: [1, 119, 120], trained: [0, 1, 1] });
  });

  it("pads a batch and weighs trained positions by 1 / their count", () => {
    const b = exampleBatch([
      tokenizeExample({ text: "xy" }, charTok, 2, 100),
      tokenizeExample({ prompt: "a", completion: "b" }, charTok, 2, 100),
    ]);
    expect(b.ids).toEqual([
      [1, 120, 121],
      [1, 97, 98],
    ]);
    expect(b.targets).toEqual([
      [120, 121, 2],
      [97, 98, 2],
    ]);
    expect(b.mask).toEqual([
      [1, 1, 1],
      [1, 1, 1],
    ]);
    expect(b.lossWeights).toEqual([
      [0.2, 0.2, 0.2],
      [0, 0.2, 0.2],
    ]);
  });
});

describe("language-modelling windows", () => {
  it("packs documents into windows of length + 1 that overlap by one token", () => {
    const w = packWindows(
      [
        [1, 2, 3],
        [4, 5, 6, 7],
      ],
      3,
    );
    expect(w).toEqual([
      [1, 2, 3, 4],
      [4, 5, 6, 7],
    ]);
    expect(windowBatch(w)).toEqual({
      ids: [
        [1, 2, 3],
        [4, 5, 6],
      ],
      targets: [
        [2, 3, 4],
        [5, 6, 7],
      ],
      lossWeights: [
        [1 / 6, 1 / 6, 1 / 6],
        [1 / 6, 1 / 6, 1 / 6],
      ],
    });
  });
  it("shuffles deterministically for a seed", () => {
    const xs = [...Array(20).keys()];
    expect(shuffled(xs, seededUniform(3))).toEqual(shuffled(xs, seededUniform(3)));
    expect(shuffled(xs, seededUniform(3))).not.toEqual(xs);
    expect([...shuffled(xs, seededUniform(3))].sort((a, b) => a - b)).toEqual(xs);
  });
  it("holds out every k-th item", () => {
    expect(splitEvery([1, 2, 3, 4, 5, 6, 7], 3)).toEqual({ train: [1, 2, 4, 5, 7], heldOut: [3, 6] });
  });
});
