// Real records from the three corpus packages, turned into examples and partitions.
import { describe, expect, it } from "vitest";
import { cmudict, sotuAddresses, spamAssassin, spamAssassinSplit } from "../../cli/corpora.ts";
import { dirichletPartitioner } from "../../src/data/partitioners/dirichlet.ts";
import { naturalPartitioner } from "../../src/data/partitioners/natural.ts";
import { g2pTask } from "../../src/data/tasks/g2p-task.ts";
import { sotuTask } from "../../src/data/tasks/sotu.ts";
import { spamTask } from "../../src/data/tasks/spam.ts";

describe("corpora as tasks", () => {
  it("SpamAssassin: five source groups as natural partitions, instruction examples, Dirichlet over labels", () => {
    const mails = spamAssassin();
    const task = spamTask(200);
    const natural = naturalPartitioner(mails.map(task.partitionKey));
    expect(natural.keys.flat()).toEqual(["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]);
    expect(Array.from({ length: 5 }, (_, id) => natural.loadPartition(id).length)).toEqual([2500, 1400, 250, 500, 1396]);
    const first = natural
      .loadPartition(3)
      .slice(0, 3)
      .map((i) => task.examples(mails[i]!)[0]!);
    for (const ex of first) {
      expect(ex).toMatchObject({
        prompt: expect.stringMatching(/^Classify this email as spam or ham\.\nSubject: .+\n.+\nAnswer:$/),
        completion: " spam",
      });
    }
    const skewed = dirichletPartitioner(mails.map(task.label), { numPartitions: 8, alpha: 0.3, seed: 0, minPartitionSize: 20 });
    expect(Array.from({ length: 8 }, (_, id) => skewed.loadPartition(id).length).reduce((a, b) => a + b, 0)).toBe(6046);
  });

  it("SpamAssassin: the spam task's half and the mail model's pretraining half share no mail and keep each group's share", () => {
    const { task, pretraining } = spamAssassinSplit();
    const key = (m: { group: string; id: string }) => `${m.group}/${m.id}`;
    const seen = new Set(pretraining.map(key));
    expect(task.length + pretraining.length).toBe(6046);
    expect(task.filter((m) => seen.has(key(m)))).toEqual([]);
    const perGroup = (ms: { group: string }[]) => {
      const n: Record<string, number> = {};
      for (const m of ms) n[m.group] = (n[m.group] ?? 0) + 1;
      return n;
    };
    expect(perGroup(task)).toEqual({ "easy-ham-1": 1250, "easy-ham-2": 700, "hard-ham-1": 125, "spam-1": 250, "spam-2": 698 });
    expect(perGroup(pretraining)).toEqual(perGroup(task));
  });

  it("SOTU: addresses by president and by party", () => {
    const addresses = sotuAddresses();
    const task = sotuTask({ by: "party", maxChars: 1000 });
    expect(naturalPartitioner(addresses.map(task.partitionKey)).keys.flat()).toContain("Federalist");
    expect(naturalPartitioner(addresses.map(sotuTask({ by: "president" }).partitionKey)).numPartitions).toBeGreaterThan(40);
    const chunks = task.examples(addresses[0]!);
    expect(chunks.length).toBeGreaterThan(3);
    for (const ex of chunks) expect("text" in ex && ex.text.length <= 1000 && ex.text.length > 0).toBe(true);
  });

  it("CMUdict: pronunciation pairs keyed by first letter", () => {
    const dict = cmudict();
    const entries = ["ADDISON", "BANANA", "ZEBRA"].map((w) => [w, dict[w]!] as const);
    expect(g2pTask.examples(entries[0]!)).toEqual([{ prompt: "Pronounce addison:", completion: " AE1 D IH0 S AH0 N" }]);
    for (const e of entries)
      expect(g2pTask.examples(e)).toEqual([{ prompt: expect.any(String), completion: expect.stringMatching(/^( [A-Z]+[0-2]?)+$/) }]);
    expect(entries.map(g2pTask.partitionKey)).toEqual(["A", "B", "Z"]);
  });
});
