// The data of a local run: which corpus records a spam run draws.
import { describe, expect, it } from "vitest";
import { spamAssassinSplit } from "../../cli/corpora.ts";
import { parseRunConfig } from "../../cli/run-config.ts";
import { runData } from "../../cli/run-data.ts";
import { spamTask } from "../../src/data/tasks/spam.ts";

describe("run data", () => {
  it("draws a spam run's records, held-out mails included, from the half of the corpus the mail model was not pretrained on", () => {
    const data = runData(parseRunConfig({ task: "spam", records: 3023, clients: 3, rounds: 1 }, "test"));
    const prompts = (ms: ReturnType<typeof spamAssassinSplit>["task"]) =>
      new Set(ms.flatMap((m) => spamTask().examples(m)).map((e) => ("prompt" in e ? e.prompt : "")));
    const { task, pretraining } = spamAssassinSplit();
    const drawn = [...data.partitions.flat(), ...data.heldOut].map((e) => ("prompt" in e ? e.prompt : ""));
    expect(data.partitions.flat().length).toBe(3023 - 302);
    const inTask = prompts(task);
    expect(drawn.filter((p) => !inTask.has(p))).toEqual([]);
    // The other half is not the same mails again: most of its prompts are not in the task's half.
    expect([...prompts(pretraining)].filter((p) => !inTask.has(p)).length).toBeGreaterThan(2500);
  });
});
