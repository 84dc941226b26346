// The tasks' clean splits on the real corpora: no record is in two splits, none was read in a shipped
// model's pretraining, checked by content (normalised text) independently of the key the splits use.
import { describe, expect, it } from "vitest";
import { sotuSplit, spamAssassinSplit } from "../../cli/corpora.ts";
import { g2pSplits, sotuSplits, spamSplits } from "../../cli/task-splits.ts";
import { normalisedText } from "../../src/data/clean-splits.ts";
import { mailText, type SpamMail } from "../../src/data/tasks/spam.ts";

/** How fedflare-mail-4m read a pretraining mail (scripts/build-default-model.ts: MAIL_CHARS). */
const PRETRAINING_CHARS = 3000;
const name = (m: SpamMail) => `${m.group}/${m.id}`;

describe("task splits", () => {
  it("spam: no mail in two splits, none whose text fedflare-mail-4m read in pretraining, 95% intervals within ±3 points", () => {
    const s = spamSplits();
    const all = [...s.train, ...s.validation, ...s.test];
    const seen = mailTexts(all);
    expect(new Set(seen).size).toBe(all.length);
    const read = spamAssassinSplit().pretraining.map((m) => normalisedText(mailText(m, PRETRAINING_CHARS)));
    expect(seen.filter((t) => read.some((r) => r.startsWith(t)))).toEqual([]);
    // The leaks found before (one copy in each half): the task half's copies are gone.
    const kept = new Set(all.map(name));
    const taskHalf = new Set(spamAssassinSplit().task.map(name));
    const pairs = ["spam-2/00266", "spam-2/00267", "easy-ham-1/00787", "easy-ham-1/00788"];
    expect(pairs.filter((n) => taskHalf.has(n))).toHaveLength(2);
    expect(pairs.filter((n) => kept.has(n))).toEqual([]);
    expect(s.dropped).toEqual({ excluded: 107, repeated: 17 });
    expect([s.test.length, s.validation.length, s.train.length]).toEqual([1100, 500, 3023 - 124 - 1600]);
    expect(1.96 * Math.sqrt(0.25 / s.test.length)).toBeLessThan(0.03);
    // Both labels in every split, about as often as in the corpus (a third spam).
    for (const split of [s.train, s.validation, s.test]) {
      const spam = split.filter((m) => m.group.startsWith("spam")).length / split.length;
      expect(spam).toBeGreaterThan(0.25);
      expect(spam).toBeLessThan(0.4);
    }
  });

  it("State of the Union: validation and test are addresses the sotu models were not pretrained on", () => {
    const s = sotuSplits();
    const read = sotuSplit().train.map((a) => normalisedText(a.text));
    const held = [...s.validation, ...s.test].map((a) => normalisedText(a.text));
    expect(held.filter((t) => read.some((r) => r.includes(t.slice(0, 2000))))).toEqual([]);
    expect([s.validation.length, s.test.length]).toEqual([12, 11]);
    expect(new Set([...s.validation, ...s.test].map((a) => a.year)).size).toBe(23);
  });

  it("g2p: no word in two splits", () => {
    const s = g2pSplits();
    const words = [...s.train, ...s.validation, ...s.test].map(([w]) => w.toLowerCase());
    expect(new Set(words).size).toBe(words.length);
    expect([s.validation.length, s.test.length]).toEqual([1200, 1200]);
    expect(s.dropped).toEqual({ excluded: 0, repeated: 0 });
  });
});

function mailTexts(mails: readonly SpamMail[]): string[] {
  return mails.map((m) => normalisedText(mailText(m, 500)));
}
