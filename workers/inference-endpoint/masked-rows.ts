// The rows the scoring extensions take: token ids and, per token, whether it counts in the loss.
import type { TokenizedExample } from "../../src/data/examples.ts";

/** The request's rows as examples, after checking their masks and that every id is below `idLimit`. */
export function maskedRows(
  inputIds: readonly (readonly number[])[],
  lossMask: readonly (readonly (0 | 1)[])[],
  idLimit: number,
  what: string,
): TokenizedExample[] {
  if (lossMask.length !== inputIds.length)
    throw new RangeError(`loss_mask has ${lossMask.length} rows for ${inputIds.length} rows of input_ids`);
  return inputIds.map((row, r) => {
    for (const id of row) if (id >= idLimit) throw new RangeError(`token id ${id} is outside ${what} [0, ${idLimit})`);
    if (row.length < 2) throw new RangeError(`input_ids[${r}] has one token: a row needs two to score one`);
    if (lossMask[r]!.length !== row.length)
      throw new RangeError(`loss_mask[${r}] must have one entry per token of input_ids[${r}] (${row.length})`);
    return { ids: [...row], trained: [...lossMask[r]!] };
  });
}

/** Per row, the tokens that count (the first predicts nothing). */
export const countedTokens = (rows: readonly TokenizedExample[]) => rows.map((r) => r.trained.slice(1).reduce<number>((a, b) => a + b, 0));
