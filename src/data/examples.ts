// Examples as token sequences with the positions that count in the loss: every token of a plain text,
// only the completion (and EOS) of a prompt/completion pair, as instruction tuning does.
import type { TextTokenizer } from "../engine/tokenizer/load.ts";
import type { TrainBatch } from "../engine/train/step.ts";
import type { Example } from "./jsonl.ts";

export interface TokenizedExample {
  ids: number[];
  /** trained[t] = 1 when ids[t] is predicted in the loss (t ≥ 1). */
  trained: number[];
}

/** A text is cut at `maxTokens`; a pair's prompt is cut (see completionExample) so its completion still fits. */
export function tokenizeExample(ex: Example, tok: TextTokenizer, eosId: number, maxTokens: number): TokenizedExample {
  if ("text" in ex) {
    const ids = [...tok.encode(ex.text), eosId].slice(0, maxTokens);
    return { ids, trained: ids.map((_, t) => (t >= 1 ? 1 : 0)) };
  }
  return completionExample(tok.encode(ex.prompt), [...tok.encode(ex.completion, { addSpecialTokens: false }), eosId], maxTokens);
}

/**
 * Prompt then completion, trained on the completion only. A prompt too long for the window loses its
 * middle: it keeps its head and its last quarter of the room, so an instruction that ends the prompt
 * ("Answer:") still meets the completion (head+tail truncation: Sun et al. 2019, "How to Fine-Tune BERT
 * for Text Classification?"). It keeps at least its first token.
 *
 * The prompt's room leaves an eighth of the window for the completion, whatever the completion's length
 * up to that: were the cut to follow the completion, a class whose label has more tokens (" ham" is two
 * in fedflare-mail-4m's vocabulary, " spam" one) would start its answer at another position, and a
 * model trained on those examples learns the class from where the prompt ends; scoring then cuts each
 * candidate label's prompt differently again. Only a longer completion takes more of the window.
 */
export function completionExample(prompt: readonly number[], completion: readonly number[], maxTokens: number): TokenizedExample {
  const room = Math.max(1, maxTokens - Math.max(completion.length, Math.ceil(maxTokens / 8)));
  const tail = prompt.length > room ? Math.floor(room / 4) : 0;
  const kept = tail > 0 ? [...prompt.slice(0, room - tail), ...prompt.slice(-tail)] : prompt.slice(0, room);
  const ids = [...kept, ...completion].slice(0, maxTokens);
  return { ids, trained: ids.map((_, t) => (t >= kept.length ? 1 : 0)) };
}

/**
 * A padded batch; each trained position weighs 1 / `totalTrained` (the update's trained positions, for
 * accumulation), so the loss is the mean NLL over the update.
 */
export function exampleBatch(
  examples: readonly TokenizedExample[],
  totalTrained = examples.reduce((s, e) => s + e.trained.reduce((a, b) => a + b, 0), 0),
): TrainBatch {
  const len = Math.max(...examples.map((e) => e.ids.length)) - 1;
  const row = (xs: readonly number[]) => [...xs, ...Array<number>(len - xs.length).fill(0)];
  return {
    ids: examples.map((e) => row(e.ids.slice(0, -1))),
    mask: examples.map((e) => row(e.ids.slice(0, -1).map(() => 1))),
    targets: examples.map((e) => row(e.ids.slice(1))),
    lossWeights: examples.map((e) => row(e.trained.slice(1).map((t) => t / totalTrained))),
  };
}
