// Grapheme-to-phoneme (g2p.ts) as a task: CMUdict entries become instruction pairs scored by exact
// match; natural partitions by the word's first letter.
import type { Task } from "./task.ts";
import { g2pExample } from "./g2p.ts";

/** A CMUdict entry as Object.entries gives it: [WORD, "PH ON EMES"]. */
export type G2pEntry = readonly [word: string, phones: string];

export const g2pTask: Task<G2pEntry> = {
  name: "g2p",
  metric: "exact_match",
  examples: ([word, phones]) => [g2pExample(word, phones)],
  partitionKey: ([word]) => word.charAt(0).toUpperCase(),
};
