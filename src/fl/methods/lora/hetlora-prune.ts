// HetLoRA's rank self-pruning (Cho et al. 2024, method.hetero.prune): a client of rank r adds to its local loss
// λ Σ ‖B_t‖_F ‖A_t‖_F over each module's tail t, the ranks a prune would drop (from r' = max(minRank, ⌊γ r⌋) up
// to r: A's last rows, B's last columns), and when that sum ends the round's local training lower than the
// version had it, uploads only its first r' ranks and trains at r' from then on. The paper gives the rule's
// shape; the regulariser as the product of the tail norms, the before/after test and the rank floor follow a
// public reimplementation (FedLoRA-public, on FederatedScope: γ 0.99 and λ 0.01 by default; others differ),
// since λ and γ could not be read in the paper. The aggregator needs nothing more: an upload's rank is its
// header's, at most the assigned one (hetero.ts), and the ranks from r' up count as zero in the client's
// zero-padded factors.
import * as v from "valibot";
import { graphName } from "../../../engine/lora/peft.ts";
import { int } from "../shared/config-fields.ts";
import type { TensorFile } from "../../tensor-file.ts";
import type { TensorMap } from "../../tensors.ts";
import type { LoraConfig } from "./config.ts";

type Prune = NonNullable<NonNullable<LoraConfig["hetero"]>["prune"]>;

const A = ".lora_A.weight";
const B = ".lora_B.weight";

/** The rank a prune of rank r lowers to: max(minRank, ⌊γ r⌋), or r itself at or below minRank. */
export const prunedRank = (p: Prune, r: number): number => Math.min(r, Math.max(p.minRank, Math.floor(p.gamma * r + 1e-9)));

/** The squared Frobenius norms of A's rows from `from` and of B's columns from `from`, B having `rank` columns. */
function tailNorms(a: Float32Array, b: Float32Array, rank: number, from: number): { a2: number; b2: number } {
  const cols = a.length / rank;
  let a2 = 0;
  for (let i = from * cols; i < a.length; i++) a2 += a[i]! * a[i]!;
  let b2 = 0;
  for (let o = 0; o < b.length / rank; o++) for (let k = from; k < rank; k++) b2 += b[o * rank + k]! ** 2;
  return { a2, b2 };
}

/**
 * Σ over modules of ‖B_t‖_F ‖A_t‖_F, the tail from rank `from` (a module of rank at most `from` has none), each
 * module's rank read from `version`'s shapes and its factors by `factor` (the version's own by default).
 */
export function tailScore(version: TensorFile, from: number, factor = (name: string) => version.tensors.get(name)!): number {
  let score = 0;
  for (const [name, shape] of version.shapes) {
    if (!name.endsWith(A) || shape[0]! <= from) continue;
    const { a2, b2 } = tailNorms(factor(name), factor(name.slice(0, -A.length) + B), shape[0]!, from);
    score += Math.sqrt(a2 * b2);
  }
  return score;
}

/**
 * The regulariser's gradient, added in place: λ ‖B_t‖/‖A_t‖ A_t for A's tail and λ ‖A_t‖/‖B_t‖ B_t for B's (zero
 * where a norm is zero: B starts at zero, and the product's gradient there is zero).
 */
export function tailPenalty(p: Prune, version: TensorFile, from: number): (grads: TensorMap, params: TensorMap) => void {
  const modules = [...version.shapes].filter(([name, shape]) => name.endsWith(A) && shape[0]! > from);
  return (grads, params) => {
    for (const [name, shape] of modules) {
      const [a, b] = [graphName(name), graphName(name.slice(0, -A.length) + B)];
      const rank = shape[0]!;
      const { a2, b2 } = tailNorms(params.get(a)!, params.get(b)!, rank, from);
      if (a2 === 0 || b2 === 0) continue;
      const [na, nb] = [Math.sqrt(a2), Math.sqrt(b2)];
      const [pa, pb, ga, gb] = [params.get(a)!, params.get(b)!, grads.get(a), grads.get(b)];
      if (ga) for (let i = (from * pa.length) / rank; i < pa.length; i++) ga[i]! += ((p.lambda * nb) / na) * pa[i]!;
      if (gb)
        for (let o = 0; o < pb.length / rank; o++)
          for (let k = from; k < rank; k++) gb[o * rank + k]! += ((p.lambda * na) / nb) * pb[o * rank + k]!;
    }
  };
}

const STORED = "hetlora-rank";

/** A client's rank as its prunes left it, in its federation's storage: the round of the last prune, and the rank before and after. */
const Held = v.pipe(
  v.strictObject({ round: int(1), from: int(2, 256), to: int(1, 255) }),
  v.check((h) => h.to < h.from),
);
type Held = v.InferOutput<typeof Held>;

/**
 * The rank a client's earlier prunes leave it at the start of `round` (none: no prune yet). A prune made in
 * this same round (a retried round) counts as not yet made, so the retry trains at the rank the first try did.
 * A record that does not parse, or from a round still to come (not this federation's), is none.
 */
export function heldRank(store: { get(name: string): Uint8Array | null }, round: number): number {
  const bytes = store.get(STORED);
  if (!bytes) return Number.POSITIVE_INFINITY;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return Number.POSITIVE_INFINITY;
  }
  const held = v.safeParse(Held, json);
  if (!held.success || held.output.round > round) return Number.POSITIVE_INFINITY;
  return held.output.round < round ? held.output.to : held.output.from;
}

/** Keeps a prune from rank `from` to `to` made in `round`. */
export function holdRank(store: { put(name: string, bytes: Uint8Array): void }, held: Held): void {
  store.put(STORED, new TextEncoder().encode(JSON.stringify(held)));
}
