// A black-box client keeps its forward session across the slices of a round (issue 16, item 9): built
// once, and the round's results exactly those of a session built per slice.
import { describe, expect, it } from "vitest";
import { JobSessions, type KeptSessions, keptSession, type Releasable } from "../../../src/engine/runtime.ts";
import { ortNodeRuntime } from "../../../src/engine/runtimes/ort-node.ts";
import { loadTokenizer } from "../../../src/engine/tokenizer/load.ts";
import { bbtGenerations, localPromptScorer, startBbt } from "../../../src/fl/methods/fedbpt/search.ts";
import { startZo, zoInitial, zoLocalSteps } from "../../../src/fl/methods/fedkseed/zo-update.ts";
import { tinyTokenizerJson } from "../../fixtures/hf-model.ts";
import { zoExamples, zoTask } from "../../fixtures/zo-task.ts";
import { tinyConfig, tinyWeights } from "../../fixtures/tiny-llama.ts";

const config = tinyConfig({ heads: 4, kvHeads: 2 });
const weights = tinyWeights(config, 8);
const runtime = ortNodeRuntime();
const tok = loadTokenizer(tinyTokenizerJson(config.vocabSize), { bos_token: "<s>", add_bos_token: true });

describe("sessions kept across a round's slices", () => {
  it("are built once under their key, and left to their owner to release", async () => {
    const sessions = new Map<string, Releasable>();
    let built = 0;
    let released = 0;
    const create = async () => {
      built++;
      return { release: async () => void released++ };
    };
    const first = await keptSession(sessions, "a", create);
    const again = await keptSession(sessions, "a", create);
    expect(again.session).toBe(first.session);
    await first.release();
    expect([built, released, sessions.size]).toEqual([1, 0, 1]);
    await (await keptSession(undefined, "a", create)).release();
    expect([built, released]).toEqual([2, 1]);
  });

  it("are kept across jobs: a job asking for a key gets its session; its first new one releases those it did not ask for", async () => {
    const sessions = new JobSessions();
    const made: string[] = [];
    const released: string[] = [];
    const create = (key: string) => async () => {
      made.push(key);
      return { release: async () => void released.push(key) };
    };
    sessions.startJob();
    const a = await keptSession(sessions, "a", create("a"));
    await keptSession(sessions, "b", create("b"));
    // The next round builds "a" again and a new "c": "a" is reused, "b" goes before "c" is built.
    sessions.startJob();
    expect((await keptSession(sessions, "a", create("a"))).session).toBe(a.session);
    await keptSession(sessions, "c", create("c"));
    expect([made, released, sessions.size]).toEqual([["a", "b", "c"], ["b"], 2]);
  });

  it("give FedKSeed's steps, a slice at a time, exactly the state of a fresh session per slice", async () => {
    const examples = zoExamples(tok);
    const task = zoTask({}, 6);
    const w0 = zoInitial(config, weights, task.method.trains, task.federationSeed);
    const sliced = async (sessions?: KeptSessions) => {
      let state = startZo(w0);
      while (state.step < task.local.steps) state = await zoLocalSteps({ config, weights, runtime, sessions }, task, examples, state, 2);
      return state;
    };
    const sessions = new Map<string, Releasable>();
    const kept = await sliced(sessions);
    expect(sessions.size).toBe(1);
    expect(kept).toEqual(await sliced());
    await Promise.all([...sessions.values()].map((s) => s.release()));
  });

  it("give FedBPT's generations, one a slice, exactly the search of a fresh session per generation", async () => {
    const space = { promptTokens: 3, dimension: 8, seed: 5 };
    const labels = ["fox", "dog"];
    const items = ["The quick brown", "The lazy", "Each client trains, the", "It runs away, the"].map((prompt, i) => ({
      prompt,
      label: labels[i % 2]!,
    }));
    const search = async (sessions?: KeptSessions) => {
      let state = startBbt({ mean: Array(8).fill(0), sigma: 1 }, 3);
      for (let g = 0; g < 3; g++) {
        const scorer = await localPromptScorer(runtime, config, weights, tok, space, { labels }, 32, sessions);
        state = await bbtGenerations(scorer, state, () => items, 1);
        await scorer.release();
      }
      return state;
    };
    const sessions = new Map<string, Releasable>();
    const kept = await search(sessions);
    expect(sessions.size).toBe(1);
    expect(kept).toEqual(await search());
    await Promise.all([...sessions.values()].map((s) => s.release()));
  });
});
