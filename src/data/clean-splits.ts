// A task's records in three disjoint splits with no duplicate content: train (partitioned over the
// clients), validation (every choice of settings and of the round to report) and test (the final report
// only). Two records are duplicates when a model would read the same text from them: the examples' prompts
// (or texts) after normalisedText. SpamAssassin holds resent mails whose headers differ and whose subject
// and body do not; a record whose content is also in a base model's pretraining corpus is dropped too, so
// no evaluated record was seen in pretraining.
import type { Example } from "./jsonl.ts";
import type { Task } from "./tasks/task.ts";

/** Unicode NFKC, lower case, whitespace runs as one space, trimmed: what "the same text" means here. */
export function normalisedText(s: string): string {
  return s.normalize("NFKC").toLowerCase().replace(/\s+/g, " ").trim();
}

/** What a model reads of a record under `task`: its examples' prompts (or texts), normalised. */
export function contentKey<Raw>(task: Task<Raw>, raw: Raw): string {
  return normalisedText(
    task
      .examples(raw)
      .map((e: Example) => ("prompt" in e ? e.prompt : e.text))
      .join("\n"),
  );
}

export interface SplitSizes {
  /** Records held for validation and for test; the rest train. */
  validation: number;
  test: number;
}

export interface CleanSplits<Raw> {
  train: Raw[];
  validation: Raw[];
  test: Raw[];
  /** Records dropped: content already in the excluded corpus, and repeats of an earlier record. */
  dropped: { excluded: number; repeated: number };
}

/** FNV-1a over the key's UTF-16 units, then a final avalanche (murmur3's fmix32): a stable place in the order. */
function rank(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Drops records whose key is in `exclude` and every repeat of a key after its first record, then places
 * each remaining record by a hash of its key: the first `test` records in hash order are the test split,
 * the next `validation` the validation split, the rest train. A record's place is its content's hash, not
 * its position: reordering the corpus changes no split, and a record added moves a record out of test
 * only by ranking ahead of it. Each split keeps the records' original order. Throws when the corpus
 * leaves nothing to train on.
 */
export function cleanSplits<Raw>(
  records: readonly Raw[],
  key: (raw: Raw) => string,
  sizes: SplitSizes,
  exclude: ReadonlySet<string> = new Set(),
): CleanSplits<Raw> {
  const seen = new Set<string>();
  const kept: { raw: Raw; key: string; at: number }[] = [];
  const dropped = { excluded: 0, repeated: 0 };
  records.forEach((raw, at) => {
    const k = key(raw);
    if (exclude.has(k)) dropped.excluded++;
    else if (seen.has(k)) dropped.repeated++;
    else {
      seen.add(k);
      kept.push({ raw, key: k, at });
    }
  });
  if (kept.length <= sizes.validation + sizes.test)
    throw new RangeError(
      `${kept.length} distinct records leave none to train on after ${sizes.test} test and ${sizes.validation} validation records`,
    );
  const byHash = kept
    .map((r) => ({ ...r, rank: rank(r.key) }))
    .sort((a, b) => a.rank - b.rank || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const inOrder = (part: typeof byHash) => part.sort((a, b) => a.at - b.at).map((r) => r.raw);
  return {
    test: inOrder(byHash.slice(0, sizes.test)),
    validation: inOrder(byHash.slice(sizes.test, sizes.test + sizes.validation)),
    train: inOrder(byHash.slice(sizes.test + sizes.validation)),
    dropped,
  };
}
