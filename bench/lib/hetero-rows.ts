// The heterogeneity rows of the quality report (issue 21): `node bench/quality.ts --preset hetero`. g2p split
// by first letter (the natural, non-IID partition), four clients, 20 rounds of three local steps each (the
// full preset's sixty steps a client, in more rounds, as the rules' instability shows over rounds), LoRA on
// q_proj and v_proj at the full preset's learning rate:
// - one rank for every client: rank 8 (what a client that can afford it trains) and rank 2 (what every
//   client can: the weakest one's);
// - per-client ranks 2, 4, 4 and 8 under each rule of method.hetero: zero-padding, HetLoRA (with and without
//   its rank self-pruning), FlexLoRA, FLoRA;
// - FFA-LoRA at rank 8 (A frozen, half the bytes up) at a learning rate chosen on validation (tune rows), and
//   rank 8's updates in F16, BF16, I8 and top-10%.
// Each row's bytes up and down a client a round are in its results beside its final loss. The test split is 400
// pronunciations: its greedy answers take most of a run's time.
import type { QualityTask } from "./quality-rows.ts";

const RANKS = { c1: 2, c2: 4, c3: 4, c4: 8 };
/**
 * HetLoRA's self-pruning as the reimplementation read for it defaults (hetlora-prune.ts): γ 0.99, so a
 * prune drops one rank at these ranks, and λ 0.01; and at λ 1, under which the penalty, not the task, moves the tail.
 */
const PRUNE = { gamma: 0.99, lambda: 0.01, minRank: 1 };
const HEAVY_PRUNE = { ...PRUNE, lambda: 1 };
/**
 * FFA-LoRA trains B alone from zero against a frozen random A, so the product moves more slowly than LoRA's at
 * one learning rate; its rate is the full preset's times one of these, tried on the validation split
 * (tune.ffa-lr-x* rows) and chosen by the last validation loss in FFA_LR_FACTOR: on seed 0, 6.3788 at ×1, 4.1929
 * at ×3, 2.9454 at ×10, 2.4787 at ×30, 2.4807 at ×100. FedIT's rank 8 is tried at ×10 too
 * (tune.fedit-r8-lr-x10: 2.6079 against 2.9825 at ×1), so the preset's rate holds the other rows back as well.
 */
const FFA_LR_FACTORS = [1, 3, 10, 30, 100];
const FFA_LR_FACTOR = 30;

/** The hetero preset's g2p task over the full preset's (its model, records and learning rate). */
export function heteroTask(full: QualityTask): QualityTask {
  const base = full.rows["lora-fedavg"]!.config;
  const local: Record<string, number> = { ...(base.local as Record<string, number>), steps: 3 };
  const lora = (r: number, extra: Record<string, unknown> = {}) => ({
    ...base,
    local,
    method: { type: "lora", r, alpha: 2 * r, targetModules: ["q_proj", "v_proj"], fromLayer: 0, ...extra },
  });
  const rank8 = lora(8);
  const rule = (name: string, extra: Record<string, unknown> = {}) => lora(8, { hetero: { rule: name, ranks: RANKS, ...extra } });
  const faster = (config: ReturnType<typeof lora>, factor: number) => ({
    ...config,
    local: { ...local, lr: Number((local.lr! * factor).toPrecision(12)) },
  });
  const ffa = (factor: number) => faster(lora(8, { freezeA: true }), factor);
  return {
    name: "g2p",
    base: { ...full.base, rounds: 20, evalExamples: 200, testExamples: 400 },
    partitions: { natural: full.partitions.natural! },
    rows: {
      "fedit-r8": { label: "FedIT, every client rank 8", config: rank8 },
      "fedit-r2": { label: "FedIT, every client rank 2", config: lora(2) },
      "zero-pad": { label: "ranks 2/4/4/8, zero-padding", config: rule("zero-pad") },
      hetlora: { label: "ranks 2/4/4/8, HetLoRA (sparsity weights)", config: rule("hetlora") },
      "hetlora-prune": {
        label: `ranks 2/4/4/8, HetLoRA with rank self-pruning (γ ${PRUNE.gamma}, λ ${PRUNE.lambda})`,
        config: rule("hetlora", { prune: PRUNE }),
      },
      "hetlora-prune-l1": {
        label: `ranks 2/4/4/8, HetLoRA with rank self-pruning (γ ${HEAVY_PRUNE.gamma}, λ ${HEAVY_PRUNE.lambda})`,
        config: rule("hetlora", { prune: HEAVY_PRUNE }),
      },
      flexlora: { label: "ranks 2/4/4/8, FlexLoRA (SVD)", config: rule("flexlora") },
      flora: { label: "ranks 2/4/4/8, FLoRA (stacked, cut to rank 8)", config: rule("flora") },
      ...Object.fromEntries(
        FFA_LR_FACTORS.map((f) => [`tune.ffa-lr-x${f}`, { label: `FFA-LoRA rank 8, lr ×${f} (tuning run)`, config: ffa(f) }]),
      ),
      "tune.fedit-r8-lr-x10": { label: "FedIT, every client rank 8, lr ×10 (tuning run)", config: faster(rank8, 10) },
      "ffa-lora": { label: `FFA-LoRA rank 8 (A frozen), lr ×${FFA_LR_FACTOR}`, config: ffa(FFA_LR_FACTOR) },
      "fedit-r8-f16": { label: "FedIT rank 8, F16 updates", config: { ...rank8, uploadDtype: "F16" } },
      "fedit-r8-bf16": { label: "FedIT rank 8, BF16 updates", config: { ...rank8, uploadDtype: "BF16" } },
      "fedit-r8-i8": { label: "FedIT rank 8, I8 updates", config: { ...rank8, uploadDtype: "I8" } },
      "fedit-r8-topk10": { label: "FedIT rank 8, top-10% updates with error feedback", config: { ...rank8, topK: 0.1 } },
    },
  };
}
