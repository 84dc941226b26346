// The data of a local run: clients train on a seeded sample of the training split; every run, whatever its
// seed, is scored on the same validation and test records.
import { describe, expect, it } from "vitest";
import { parseRunConfig } from "../../cli/run-config.ts";
import { federationShape, runData } from "../../cli/run-data.ts";
import { spamSplits } from "../../cli/task-splits.ts";
import type { Example } from "../../src/data/jsonl.ts";
import { spamTask } from "../../src/data/tasks/spam.ts";

const prompt = (e: Example) => ("prompt" in e ? e.prompt : e.text);

describe("run data", () => {
  it("draws a spam run's clients from the training split and scores it on the validation and test splits, the same for every seed", () => {
    const splits = spamSplits();
    const prompts = (ms: typeof splits.train) => new Set(ms.flatMap((m) => spamTask().examples(m)).map(prompt));
    const [train, validation, test] = [prompts(splits.train), prompts(splits.validation), prompts(splits.test)];
    const run = (seed: number) =>
      runData(parseRunConfig({ task: "spam", records: 5000, clients: 3, rounds: 1, seed, evalExamples: 100, testExamples: 200 }, "t"));
    const [a, b] = [run(1), run(2)];
    expect(a.partitions.flat().map(prompt).sort()).toEqual([...train].sort());
    expect(a.validation.map(prompt).filter((p) => !validation.has(p))).toEqual([]);
    expect(a.test.map(prompt).filter((p) => !test.has(p))).toEqual([]);
    expect([a.validation.length, a.test.length]).toEqual([100, 200]);
    expect(b.validation).toEqual(a.validation);
    expect(b.test).toEqual(a.test);
    expect(b.partitions).not.toEqual(a.partitions);
    // A capped set is a sample of both labels, not the corpus's first group.
    expect(new Set(a.test.map((e) => ("completion" in e ? e.completion : "")))).toEqual(new Set([" spam", " ham"]));
    // Uncapped, the whole splits.
    const whole = runData(parseRunConfig({ task: "spam", records: 100, clients: 2, rounds: 1 }, "t"));
    expect([whole.validation.length, whole.test.length]).toEqual([500, 1100]);
  });

  it("gives a baseline the federation's own data: centralized pools every partition, local-only keeps one", () => {
    const base = { task: "spam", records: 300, clients: 3, rounds: 1, seed: 4, partitioner: { type: "dirichlet", alpha: 0.5 } };
    const config = (extra: object) => parseRunConfig({ ...base, ...extra }, "t");
    const fed = runData(config({}));
    expect(fed.partitions).toHaveLength(3);
    expect(runData(config({ baseline: { type: "centralized" } })).partitions).toEqual([fed.partitions.flat()]);
    expect(runData(config({ baseline: { type: "local-only", client: 2 } })).partitions).toEqual([fed.partitions[2]]);
    expect(federationShape(config({}))).toMatchObject({ clientsPerRound: 3, local: { steps: 12 } });
    expect(federationShape(config({ baseline: { type: "centralized" } }))).toMatchObject({ clientsPerRound: 1, local: { steps: 36 } });
    expect(federationShape(config({ baseline: { type: "local-only", client: 0 } }))).toMatchObject({
      clientsPerRound: 1,
      local: { steps: 12 },
    });
    expect(() => config({ baseline: { type: "local-only", client: 3 } })).toThrow(/baseline.client/);
  });

  it("flips the labels of the last attackers' partitions only, and refuses an attack it cannot run", () => {
    const base = { task: "spam", records: 300, clients: 3, rounds: 1, seed: 4 };
    const honest = runData(parseRunConfig(base, "t"));
    const poisoned = runData(parseRunConfig({ ...base, attack: { attackers: 1, poison: { type: "label-flip" } } }, "t"));
    expect(poisoned.partitions.slice(0, 2)).toEqual(honest.partitions.slice(0, 2));
    const other = { " spam": " ham", " ham": " spam" } as Record<string, string>;
    expect(poisoned.partitions[2]).toEqual(
      honest.partitions[2]!.map((e) => ("completion" in e ? { ...e, completion: other[e.completion] } : e)),
    );
    expect(poisoned.validation).toEqual(honest.validation);
    expect(() => runData(parseRunConfig({ ...base, task: "g2p", attack: { attackers: 1, poison: { type: "label-flip" } } }, "t"))).toThrow(
      /label-flip needs a classification task; "g2p" has no labels/,
    );
    expect(() => parseRunConfig({ ...base, attack: { attackers: 3, poison: { type: "scale", factor: 10 } } }, "t")).toThrow(
      /attack.attackers" must leave an honest client/,
    );
    expect(() =>
      parseRunConfig({ ...base, attack: { attackers: 1, poison: { type: "scale", factor: 10 } }, baseline: { type: "centralized" } }, "t"),
    ).toThrow(/a baseline trains without attackers/);
  });
});
