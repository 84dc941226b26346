// Grapheme-to-phoneme as instruction text: the prompt names a word, the completion is its ARPAbet
// pronunciation from the CMU Pronouncing Dictionary (exact match is the task's metric).
import type { PairExample } from "../jsonl.ts";

export function g2pExample(word: string, phones: string): PairExample {
  return { prompt: `Pronounce ${word.toLowerCase()}:`, completion: ` ${phones.trim()}` };
}

/** Plain words only: letters, no alternative pronunciations ("WORD(1)"), within a length range. */
export function isPlainWord(word: string, minLength = 3, maxLength = 10): boolean {
  return /^[A-Z]+$/.test(word) && word.length >= minLength && word.length <= maxLength;
}
