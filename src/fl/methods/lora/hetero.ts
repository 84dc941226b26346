// LoRA with per-client ranks (method.hetero): the version holds rank r (each module its rank_pattern's);
// a client of rank r_k trains the version's first r_k ranks of each module (A's first rows, B's first
// columns: HetLoRA's truncation, and, since FlexLoRA's versions are stored as SVD factors ordered by
// singular value, FlexLoRA's rank-r_k SVD) at the version's scaling α/r, so the truncated product is the
// version's own, and uploads their change. The aggregator lifts that upload into rank r as
// u_k = pad(trunc_k(G) + δ_k) − G: the change from G to the client's zero-padded factors, whose mean is
// zero-padding's aggregate and whose factors G + u_k are what HetLoRA and FlexLoRA combine
// (src/fl/hetero/aggregation.ts; FLoRA's uploads are fresh factors instead, padded: flora.ts).
import type { FlatLayout, FlatSource, FlatTensor } from "../../flat-tensors.ts";
import { pieces } from "../../flat-tensors.ts";
import { heteroAggregate, type LoraModule, moduleBytes } from "../../hetero/aggregation.ts";
import type { TensorFile } from "../../tensor-file.ts";
import { FlError } from "../../errors.ts";
import { MethodError } from "../errors.ts";
import type { MethodAggregation, PerClientUploads } from "../method.ts";
import type { LoraConfig } from "./config.ts";

const A = ".lora_A.weight";
const B = ".lora_B.weight";

/** The rank `client` trains: its own in method.hetero.ranks, or none (every module at the version's rank). */
export const clientRank = (m: LoraConfig, client: string): number => m.hetero?.ranks[client] ?? Number.POSITIVE_INFINITY;

/** The version's largest module rank: r, or a rank_pattern's above it. */
export const largestRank = (m: LoraConfig): number => Math.max(m.r, ...Object.values(m.rankPattern ?? {}));

/** Refuses per-client ranks the version cannot hold, or combined with what they contradict. */
export function checkHetero(m: LoraConfig): void {
  if (!m.hetero) return;
  const largest = largestRank(m);
  const over = Object.entries(m.hetero.ranks).find(([, r]) => r > largest);
  if (over)
    throw new MethodError(
      "method_invalid",
      `method.hetero.ranks: client "${over[0]}" has rank ${over[1]}, above the version's largest rank ${largest}`,
    );
  if (m.freezeA)
    throw new MethodError("method_invalid", "method.hetero with freezeA: FFA-LoRA's frozen A is shared at one rank; use one of them");
  if (m.hetero.prune && m.hetero.rule !== "hetlora")
    throw new MethodError("method_invalid", `method.hetero.prune is HetLoRA's rank self-pruning; rule "${m.hetero.rule}" has none`);
  if (m.hetero.rule === "flora" && (m.rankPattern || m.alphaPattern))
    throw new MethodError(
      "method_invalid",
      'method.hetero.rule "flora" stacks fresh factors of one rank a client on every module; leave rankPattern and alphaPattern out',
    );
}

/** A tensor's shape for a client of rank r: its module's rank (a rank_pattern's) where that is lower; A is r × in, B out × r. */
function shapeAt(name: string, shape: readonly number[], r: number): number[] {
  if (name.endsWith(A)) return [Math.min(r, shape[0]!), shape[1]!];
  if (name.endsWith(B)) return [shape[0]!, Math.min(r, shape[1]!)];
  throw new MethodError("method_invalid", `tensor "${name}" is not a LoRA factor`);
}

/** A version truncated to rank r: each A's first r rows and each B's first r columns (all of a module of lower rank). */
export function truncateVersion(file: TensorFile, r: number): TensorFile {
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, t] of file.tensors) {
    const shape = file.shapes.get(name)!;
    const [rows, cols] = shape as [number, number];
    const to = shapeAt(name, shape, r);
    if (name.endsWith(A)) tensors.set(name, t.slice(0, to[0]! * cols));
    else {
      const k = to[1]!;
      tensors.set(
        name,
        Float32Array.from({ length: rows * k }, (_, i) => t[Math.floor(i / k) * cols + (i % k)]!),
      );
    }
    shapes.set(name, to);
  }
  return { tensors, shapes, metadata: file.metadata };
}

/** The version's layout at rank r, in the same order. */
export function layoutAt(global: FlatLayout, r: number): FlatLayout {
  let total = 0;
  const tensors = global.tensors.map((t) => {
    const shape = shapeAt(t.name, t.shape, r);
    const length = shape[0]! * shape[1]!;
    const out: FlatTensor = { name: t.name, shape, start: total, length };
    total += length;
    return out;
  });
  return { tensors, total };
}

/**
 * A rank-r upload (read in `own`) lifted into the version's rank: its change where it has ranks, −G past them
 * (the change to the client's zero-padded factors); or, `fresh` (FLoRA's freshly trained factors), the
 * upload zero-padded. `version` is G in the version's layout, read a piece at a time (never whole).
 */
export function liftedUpdate(update: FlatSource, own: FlatLayout, global: FlatLayout, version: FlatSource, fresh = false): FlatSource {
  const byName = new Map(own.tensors.map((t) => [t.name, t]));
  return {
    total: global.total,
    read(start, out) {
      for (const { tensor, at, into, count } of pieces(global, start, out.length)) {
        const mine = byName.get(tensor.name)!;
        // G's values of this piece, where the upload has none (not read for FLoRA's, padded with zeros).
        const values = new Float32Array(count);
        if (!fresh) version.read(tensor.start + at, values);
        const [, cols] = tensor.shape as [number, number];
        if (tensor.name.endsWith(A)) {
          // A's first r rows are the first r · in values in both layouts.
          const kept = Math.max(0, Math.min(at + count, mine.length) - at);
          if (kept > 0) update.read(mine.start + at, out.subarray(into, into + kept));
          for (let i = kept; i < count; i++) out[into + i] = -values[i]!;
          continue;
        }
        // B (out × R): row o's first r columns are the upload's row o.
        const r = mine.shape[1]!;
        const firstRow = Math.floor(at / cols);
        const lastRow = Math.floor((at + count - 1) / cols);
        const rows = new Float32Array((lastRow - firstRow + 1) * r);
        update.read(mine.start + firstRow * r, rows);
        for (let i = 0; i < count; i++) {
          const o = Math.floor((at + i) / cols);
          const j = (at + i) % cols;
          out[into + i] = j < r ? rows[(o - firstRow) * r + j]! : -values[i]!;
        }
      }
    },
  };
}

/**
 * The rank of `client`'s upload: the most rows its A tensors declare (a module of a lower rank_pattern rank sends
 * that rank), at most the rank it was assigned, which its deployment may lower (ADAPTER_RANK).
 */
function uploadRank(m: LoraConfig, client: string, global: FlatLayout, sent: (tensor: string) => readonly number[] | undefined): number {
  const assigned = Math.min(clientRank(m, client), Math.max(...global.tensors.filter((t) => t.name.endsWith(A)).map((t) => t.shape[0]!)));
  const rows = global.tensors.flatMap((t) => (t.name.endsWith(A) ? [sent(t.name)?.[0] ?? assigned] : []));
  const r = Math.max(...rows);
  if (!Number.isInteger(r) || r < 1 || r > assigned)
    throw new FlError("tensor_mismatch", `upload: client "${client}" trains at most rank ${assigned}; its lora_A tensors have ${r} rows`);
  return r;
}

/** The per-client uploads of a federation with method.hetero; null without. */
export function heteroUploads(m: LoraConfig): PerClientUploads | null {
  if (!m.hetero) return null;
  return {
    option: "method.hetero",
    layout: (client, global, sent) => layoutAt(global, uploadRank(m, client, global, sent)),
    lift: (_client, update, own, global, version) => liftedUpdate(update, own, global, version, m.hetero!.rule === "flora"),
  };
}

/**
 * Work units of one module's SVD over a stacked rank K (src/fl/hetero/rules.ts): K²(in + out) through the stack's
 * QR, in · out · min(in, out) for the dense product once K reaches the smaller side. bench/hetero-cost.ts
 * measures the nanoseconds a unit.
 */
export function moduleWork(shape: { in: number; out: number }, k: number): number {
  return k >= Math.min(shape.in, shape.out) ? shape.in * shape.out * Math.min(shape.in, shape.out) : k * k * (shape.in + shape.out);
}

/** The layout's LoRA modules: each A with its B, at its rank (A's rows). */
export function loraModules(layout: FlatLayout): LoraModule[] {
  const byName = new Map(layout.tensors.map((t) => [t.name, t]));
  return layout.tensors
    .filter((t) => t.name.endsWith(A))
    .map((a) => {
      const b = byName.get(a.name.slice(0, -A.length) + B);
      if (!b) throw new MethodError("method_invalid", `LoRA factor "${a.name}" has no B`);
      return { a, b, shape: { in: a.shape[1]!, out: b.shape[0]! }, r: a.shape[0]! };
    });
}

/** HetLoRA's, FlexLoRA's or FLoRA's aggregate over the round's kept updates; null for zero-padding (the plain mean) or without hetero. */
export function heteroAggregation(m: LoraConfig): MethodAggregation | null {
  const rule = m.hetero?.rule;
  if (rule === undefined || rule === "zero-pad") return null;
  return {
    option: `method.hetero.rule "${rule}"`,
    // The SVD rules' next version is the SVD's factors, ordered by singular value, which clients truncate: a
    // server optimizer's step on them would mix bases that change every round.
    ...(rule === "hetlora"
      ? {}
      : {
          strategies: {
            names: ["fedavg"],
            why: `method.hetero.rule "${rule}" makes the next version from the SVD of the round's products`,
          },
        }),
    peakBytes: (global, updates) => Math.max(...loraModules(global).map((x) => moduleBytes(x, updates, rule !== "hetlora"))),
    // HetLoRA's weights: two r × r Gram matrices an update; the SVD rules: each module's SVD of K ranks.
    work: (global, updates) =>
      loraModules(global).reduce(
        (n, x) =>
          n +
          (rule === "hetlora"
            ? updates * x.r * x.r * (x.shape.in + x.shape.out)
            : moduleWork(x.shape, updates * x.r + (rule === "flora" ? x.r : 0))),
        0,
      ),
    aggregate: (set, layout, global, out) => ({ ...heteroAggregate(rule, set, loraModules(layout), global, out) }),
  };
}
