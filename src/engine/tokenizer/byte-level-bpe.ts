// A byte-level BPE trainer (Sennrich et al. 2016, with GPT-2's byte-to-unicode alphabet and
// pre-tokenization) that writes a Hugging Face `tokenizer.json`, so any HF tokenizer reader loads it.

/** GPT-2's reversible map from the 256 byte values to printable unicode characters. */
export function byteToUnicode(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + extra++));
  return out;
}

/** The GPT-2 split that HF's ByteLevel pre-tokenizer applies with use_regex. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface BpeTrainOptions {
  vocabSize: number;
  /** Special tokens, given ids 0.. in this order before the 256 byte symbols. */
  specialTokens: string[];
  /** Added at the start of every encoding by the post-processor (Llama convention). */
  bosToken?: string;
  /** Words seen fewer times do not drive merges. */
  minFrequency?: number;
}

export function trainByteLevelBpe(texts: Iterable<string>, opts: BpeTrainOptions): Record<string, unknown> {
  const alphabet = byteToUnicode();
  const encoder = new TextEncoder();
  const wordCounts = new Map<string, number>();
  for (const text of texts)
    for (const m of text.matchAll(GPT2_SPLIT)) {
      const w = Array.from(encoder.encode(m[0]), (b) => alphabet[b]!).join("");
      wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  const minFreq = opts.minFrequency ?? 2;
  const words = [...wordCounts].filter(([, n]) => n >= minFreq).map(([w, n]) => ({ symbols: [...w], n }));

  const vocab = new Map<string, number>();
  for (const t of opts.specialTokens) vocab.set(t, vocab.size);
  for (const ch of alphabet) vocab.set(ch, vocab.size);
  const merges: [string, string][] = [];

  // Pair counts and the words each pair occurs in, updated only where a merge changes a word.
  const SEP = "\u0000";
  const pairCount = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const addPairs = (wi: number, sign: 1 | -1) => {
    const { symbols, n } = words[wi]!;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = symbols[i] + SEP + symbols[i + 1];
      pairCount.set(key, (pairCount.get(key) ?? 0) + sign * n);
      if (sign > 0) {
        let set = pairWords.get(key);
        if (!set) {
          set = new Set();
          pairWords.set(key, set);
        }
        set.add(wi);
      }
    }
  };
  words.forEach((_, wi) => addPairs(wi, 1));

  while (vocab.size < opts.vocabSize) {
    let best: string | null = null;
    let bestCount = 0;
    // Ties broken by the pair's text so training is deterministic.
    for (const [k, n] of pairCount) if (n > bestCount || (n === bestCount && best !== null && k < best)) [best, bestCount] = [k, n];
    if (best === null || bestCount < minFreq) break;
    const [a, b] = best.split(SEP) as [string, string];
    merges.push([a, b]);
    vocab.set(a + b, vocab.size);
    for (const wi of pairWords.get(best) ?? []) {
      const w = words[wi]!;
      addPairs(wi, -1);
      for (let i = 0; i + 1 < w.symbols.length; i++) if (w.symbols[i] === a && w.symbols[i + 1] === b) w.symbols.splice(i, 2, a + b);
      addPairs(wi, 1);
    }
    pairCount.delete(best);
    pairWords.delete(best);
  }

  const special = opts.specialTokens.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const bos = opts.bosToken;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: special,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: bos
      ? {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
            { SpecialToken: { id: bos, type_id: 1 } },
            { Sequence: { id: "B", type_id: 1 } },
          ],
          special_tokens: { [bos]: { id: bos, ids: [vocab.get(bos)!], tokens: [bos] } },
        }
      : { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
}
