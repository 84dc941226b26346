// Clean splits: duplicates by content dropped, excluded content dropped, and each record's split decided
// by its content alone.
import { describe, expect, it } from "vitest";
import { cleanSplits, contentKey, normalisedText } from "../../src/data/clean-splits.ts";
import { spamTask } from "../../src/data/tasks/spam.ts";

const words = Array.from({ length: 400 }, (_, i) => `record ${i}`);

describe("clean splits", () => {
  it("normalises case, Unicode compatibility forms and whitespace", () => {
    expect(normalisedText("  Free\tＭＯＮＥＹ\n\n now ")).toBe("free money now");
  });

  it("drops excluded content and repeats after the first, and sizes the held-out splits", () => {
    const records = [...words, "Record 3", "record  7", "excluded one", "EXCLUDED one"];
    const s = cleanSplits(records, normalisedText, { validation: 50, test: 100 }, new Set(["excluded one"]));
    expect(s.dropped).toEqual({ excluded: 2, repeated: 2 });
    expect([s.test.length, s.validation.length, s.train.length]).toEqual([100, 50, 250]);
    const all = [...s.train, ...s.validation, ...s.test];
    expect(new Set(all).size).toBe(400);
    expect(all.sort()).toEqual([...words].sort());
    // Each split keeps the corpus's order.
    expect(s.test).toEqual([...s.test].sort((a, b) => words.indexOf(a) - words.indexOf(b)));
  });

  it("places a record by its content: reordering or growing the corpus moves no record out of test", () => {
    const a = cleanSplits(words, normalisedText, { validation: 40, test: 40 });
    const b = cleanSplits([...words].reverse(), normalisedText, { validation: 40, test: 40 });
    expect(new Set(b.test)).toEqual(new Set(a.test));
    expect(new Set(b.validation)).toEqual(new Set(a.validation));
    // 100 more records rank ahead of a few old test records: those move to validation, none to training.
    const grown = cleanSplits([...words, ...Array.from({ length: 100 }, (_, i) => `extra ${i}`)], normalisedText, {
      validation: 40,
      test: 40,
    });
    expect(a.test.filter((r) => grown.train.includes(r))).toEqual([]);
  });

  it("refuses a corpus that leaves nothing to train on", () => {
    expect(() => cleanSplits(words.slice(0, 10), normalisedText, { validation: 5, test: 5 })).toThrow(/none to train on/);
  });

  it("keys a mail by what the task shows of it: resent copies with other headers are one record", () => {
    const body = "Subject: Cheap meds\n\nBuy now at http://example.com";
    const a = { id: "00001", group: "spam-1", text: `Received: from a.example\n${body}` };
    const b = { id: "00002", group: "spam-2", text: `Received: from b.example\nX-Spam-Status: yes\n${body}` };
    expect(contentKey(spamTask(), a)).toBe(contentKey(spamTask(), b));
    expect(contentKey(spamTask(), a)).toContain("cheap meds");
  });
});
