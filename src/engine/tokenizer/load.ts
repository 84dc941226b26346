// The model's tokenizer from `tokenizer.json` (+ `tokenizer_config.json`) through @huggingface/tokenizers,
// whose post-processor adds BOS/EOS exactly as the Rust tokenizers library does for that file.
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelError } from "../errors.ts";

export interface TextTokenizer {
  /** Token ids for `text`, with the special tokens the tokenizer's post-processor adds (e.g. BOS). */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
}

export function loadTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown = {}): TextTokenizer {
  if (typeof tokenizerJson !== "object" || tokenizerJson === null || !("model" in tokenizerJson))
    throw new ModelError("tokenizer_invalid", 'tokenizer.json: expected a Hugging Face tokenizers object with a "model" field');
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokenizerJson, tokenizerConfig ?? {});
  } catch (e) {
    throw new ModelError("tokenizer_invalid", `tokenizer.json could not be loaded: ${(e as Error).message}`);
  }
  return {
    encode: (text, opts) => tok.encode(text, { add_special_tokens: opts?.addSpecialTokens ?? true }).ids,
    decode: (ids, opts) => tok.decode([...ids], { skip_special_tokens: opts?.skipSpecialTokens ?? false }),
  };
}

/** The special tokens a tokenizer puts before the text (BOS), found by encoding one letter. */
export function leadingSpecialIds(tok: TextTokenizer): number[] {
  const withSpecial = tok.encode("a");
  return withSpecial.slice(0, Math.max(0, withSpecial.indexOf(tok.encode("a", { addSpecialTokens: false })[0]!)));
}
