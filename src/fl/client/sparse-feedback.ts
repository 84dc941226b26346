// A client's top-k sparse update across rounds (src/fl/sparse-updates.ts): the residual it did not send is
// kept in its federation's store, with the round it was made in and the residual that round started from,
// so a round's last slice run again (a retry) sends the same update rather than feeding its residual twice.
import { type SparseTensor, sparsify } from "../sparse-updates.ts";
import { decodeTensorFile, encodeTensorFile } from "../tensor-file.ts";
import type { TensorMap } from "../tensors.ts";

const KEY = "topk-residual";

/** The tensors of `file` whose names start with `prefix`, without it; null when there are none. */
function part(file: TensorMap, prefix: string): TensorMap | null {
  const kept = new Map([...file].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
  return kept.size ? kept : null;
}

/** Round `round`'s values to send (of the update plus what earlier rounds kept back), keeping the new residual. */
export function sparseRound(
  store: { get(name: string): Uint8Array | null; put(name: string, bytes: Uint8Array): void },
  round: number,
  delta: TensorMap,
  k: number,
): Map<string, SparseTensor> {
  const kept = store.get(KEY);
  let before: TensorMap | null = null;
  if (kept) {
    const file = decodeTensorFile(kept, "the kept top-k residual");
    before = part(file.tensors, Number(file.metadata.round) === round ? "in." : "out.");
  }
  const { sent, residual } = sparsify(delta, before, k);
  const tensors = new Map([...(before ?? new Map()).entries()].map(([n, t]) => [`in.${n}`, t]));
  for (const [n, t] of residual) tensors.set(`out.${n}`, t);
  store.put(KEY, encodeTensorFile(tensors, new Map(), { round: String(round) }));
  return sent;
}
