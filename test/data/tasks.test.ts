import { describe, expect, it } from "vitest";
import {
  accuracy,
  balancedAccuracy,
  classifyByLogProb,
  editDistance,
  exactMatch,
  normalizeAnswer,
  perplexityFromNll,
  rocAuc,
  unitErrorRate,
  wilsonInterval,
} from "../../src/data/metrics.ts";
import { g2pTask } from "../../src/data/tasks/g2p-task.ts";
import { sentenceChunks, sotuTask } from "../../src/data/tasks/sotu.ts";
import { parseMail, spamTask } from "../../src/data/tasks/spam.ts";

const mail = {
  id: "00007",
  group: "hard-ham-1",
  text: "From: a@b.c\r\nSubject: Weekly\r\n  news\r\nX-Spam-Status: No\r\n\r\n<p>Hello   <b>there</b>,</p>\r\nfriend.\r\n",
};

describe("spam task", () => {
  it("unfolds the subject and keeps the body after the first blank line", () => {
    expect(parseMail(mail.text)).toEqual({ subject: "Weekly news", body: "<p>Hello   <b>there</b>,</p>\nfriend.\n" });
    expect(parseMail("Subject: only headers")).toEqual({ subject: "only headers", body: "" });
  });

  it("asks for spam or ham with the subject and the tag-free, collapsed, truncated body", () => {
    const task = spamTask(12);
    expect(task.examples(mail)).toEqual([
      { prompt: "Classify this email as spam or ham.\nSubject: Weekly news\nHello there \nAnswer:", completion: " ham" },
    ]);
    expect(task.label(mail)).toBe("ham");
    expect(task.label({ ...mail, group: "spam-2" })).toBe("spam");
    expect(task.partitionKey(mail)).toBe("hard-ham-1");
    expect([task.metric, task.labels]).toEqual(["accuracy", ["spam", "ham"]]);
  });
});

describe("SOTU task", () => {
  const address = { year: 1790, name: "George Washington", party: "none", text: "One. Two two? Three three three! Four." };

  it("packs whole sentences into chunks up to a length", () => {
    expect(sentenceChunks(address.text, 14)).toEqual(["One. Two two?", "Three three three!", "Four."]);
    expect(sentenceChunks(address.text, 100)).toEqual([address.text]);
  });

  it("gives text examples per address or per chunk, keyed by president or party", () => {
    expect(sotuTask({ by: "president" }).examples(address)).toEqual([{ text: address.text }]);
    expect(sotuTask({ by: "party", maxChars: 14 }).examples(address)).toHaveLength(3);
    expect(sotuTask({ by: "president" }).partitionKey(address)).toBe("George Washington");
    expect(sotuTask({ by: "party" }).partitionKey(address)).toBe("none");
  });
});

describe("g2p task", () => {
  it("pairs a word with its phones, keyed by first letter", () => {
    expect(g2pTask.examples(["ADDISON", "AE1 D IH0 S AH0 N"])).toEqual([
      { prompt: "Pronounce addison:", completion: " AE1 D IH0 S AH0 N" },
    ]);
    expect(g2pTask.partitionKey(["ADDISON", "AE1 D IH0 S AH0 N"])).toBe("A");
  });
});

describe("metrics", () => {
  it("perplexity is exp of the mean NLL per token", () => {
    expect(perplexityFromNll(3 * Math.log(4), 3)).toBeCloseTo(4, 12);
    expect(() => perplexityFromNll(1, 0)).toThrow(expect.objectContaining({ code: "dataset_empty" }));
  });

  it("balanced accuracy is the mean per-label recall: a constant answer scores 1 / labels on skewed data", () => {
    const gold = ["ham", "ham", "ham", "spam"];
    expect(accuracy(["ham", "ham", "ham", "ham"], gold)).toBe(0.75);
    expect(balancedAccuracy(["ham", "ham", "ham", "ham"], gold)).toBe(0.5);
    expect(balancedAccuracy(["ham", "spam", "ham", "spam"], gold)).toBeCloseTo((2 / 3 + 1) / 2, 12);
  });

  it("the Wilson interval: [0.2366, 0.7634] for 5 of 10, [0, 0.2775] for 0 of 10, ±2.95 points at 550 of 1,100", () => {
    const five = wilsonInterval(5, 10);
    expect([five.low, five.high].map((x) => x.toFixed(4))).toEqual(["0.2366", "0.7634"]);
    const none = wilsonInterval(0, 10);
    expect([none.low, none.high].map((x) => x.toFixed(4))).toEqual(["0.0000", "0.2775"]);
    const half = wilsonInterval(550, 1100);
    expect((half.high - half.low) / 2).toBeCloseTo(0.02953, 4);
    expect(() => wilsonInterval(0, 0)).toThrow(/at least one trial/);
  });

  it("ROC AUC: the share of (positive, negative) pairs ordered right, ties a half", () => {
    expect(rocAuc([0.9, 0.8, 0.3, 0.1], [true, true, false, false])).toBe(1);
    expect(rocAuc([0.1, 0.3, 0.8, 0.9], [true, true, false, false])).toBe(0);
    // Pairs (p, n): (0.8, 0.5) right, (0.8, 0.9) wrong, (0.5, 0.5) tie, (0.5, 0.9) wrong: 1.5 / 4.
    expect(rocAuc([0.8, 0.5, 0.5, 0.9], [true, true, false, false])).toBeCloseTo(0.375, 12);
    expect(() => rocAuc([1, 2], [true, true])).toThrow(/both positives and negatives/);
  });

  it("accuracy and exact match count equal answers, exact match after trimming and collapsing spaces", () => {
    expect(accuracy(["spam", "ham", "ham"], ["spam", "spam", "ham"])).toBeCloseTo(2 / 3, 12);
    expect(normalizeAnswer("  AH0\t B \n")).toBe("AH0 B");
    expect(exactMatch([" AE1  D ", "AE1 D", "ae1 d"], ["AE1 D", "AE1 D0", "AE1 D"])).toBeCloseTo(1 / 3, 12);
    expect(() => accuracy(["a"], [])).toThrow(expect.objectContaining({ code: "metric_inputs_mismatched" }));
    expect(() => exactMatch([], [])).toThrow(expect.objectContaining({ code: "dataset_empty" }));
  });

  it("counts edits between unit sequences, and the phoneme error rate as edits over the gold answers' phonemes", () => {
    expect(editDistance([], ["a"])).toBe(1);
    expect(editDistance(["k", "i", "t", "t", "e", "n"], ["s", "i", "t", "t", "i", "n", "g"])).toBe(3);
    expect(editDistance(["AE1", "D"], ["AE1", "D"])).toBe(0);
    // "K AE1 T" for "K AE1 T S": one deletion of 4; "D AO1" for "D AO1 G": one insertion of 3; 2 / 7.
    expect(unitErrorRate([" K AE1 T", "D AO1 "], ["K AE1 T S", " D  AO1 G"])).toBeCloseTo(2 / 7, 12);
    // A long wrong answer costs more than the gold's length.
    expect(unitErrorRate(["A B C D"], ["X"])).toBe(4);
    expect(() => unitErrorRate(["A"], [" "])).toThrow(expect.objectContaining({ code: "dataset_empty" }));
    expect(() => unitErrorRate([], ["A"])).toThrow(expect.objectContaining({ code: "metric_inputs_mismatched" }));
  });

  it("classifies by the highest total log-probability of a label's completion tokens, ties to the first", () => {
    expect(classifyByLogProb({ spam: [-0.5, -1.5], ham: [-1.2] })).toBe("ham");
    expect(classifyByLogProb({ spam: [-1], ham: [-0.25, -0.75] })).toBe("spam");
    expect(() => classifyByLogProb({})).toThrow(expect.objectContaining({ code: "dataset_empty" }));
  });
});
