// LoRA's client side: gradient steps on the adapter; with an endpoint and fromLayer above 0 the frozen
// trunk below the cut runs there and the client holds only the layers above it (split learning). A client
// that trains locally also scores versions on its held-out split (federated evaluation).
import { ForwardModel } from "../../../engine/forward.ts";
import { heldOutLoss, labelAccuracy, labeledPrompts } from "../../../engine/train/evaluate.ts";
import { labelWordsOf } from "../shared/config-fields.ts";
import type { ClientMethod, ClientResources, ClientTask } from "../method.ts";
import { gradientSlice } from "../shared/gradient-slice.ts";
import { versionPairs } from "./adapter.ts";
import { LoraConfig } from "./config.ts";
import { floraMask, floraStart, freshFactors } from "./flora.ts";
import { clientRank, largestRank, truncateVersion } from "./hetero.ts";
import { heldRank, holdRank, prunedRank, tailPenalty, tailScore } from "./hetlora-prune.ts";
import { graphName } from "../../../engine/lora/peft.ts";
import { MethodError } from "../errors.ts";
import { loraPlan } from "./plan.ts";
import { labelWordTraining } from "../shared/label-word-training.ts";

/**
 * The rank a client trains this round: the assigned one, lowered by its deployment's ADAPTER_RANK and, for
 * good, by HetLoRA's self-pruning (hetlora-prune.ts), at most the version's largest.
 */
function trainedRank(task: ClientTask<LoraConfig>, store: ClientResources["store"]): number {
  const m = task.method;
  const largest = largestRank(m);
  const held = m.hetero?.prune ? heldRank(store, task.round) : largest;
  return Math.min(clientRank(m, task.clientId), task.maxRank ?? largest, largest, held);
}

export const loraClient: ClientMethod<LoraConfig> = {
  type: "lora",
  config: LoraConfig,
  placement: (m, offers) => (offers.endpoint && m.fromLayer > 0 ? "endpoint" : "local"),
  demands: (_m, local) => ({ steps: local.steps, remoteRows: 0 }),
  // A client below the version's rank fetches only the ranks it trains (the version's rank view), but FLoRA's,
  // which stacks its own on the whole version, and one whose federation sends versions in half precision.
  start: async (task, _placement, resources) => {
    const m = task.method;
    const rank = trainedRank(task, resources.store);
    if (!m.hetero || m.hetero.rule === "flora" || rank >= largestRank(m) || (task.downloadDtype ?? "F32") !== "F32") return null;
    const path = `/federations/${encodeURIComponent(task.federationId)}/versions/${task.baseVersion}/rank?r=${rank}`;
    const start = await resources.download(path, `version ${task.baseVersion} at rank ${rank}`);
    if (!start) throw new Error(`the coordinator has no version ${task.baseVersion} of "${task.federationId}"`);
    return { start, downloadBytes: start.length };
  },
  slice: async (ctx) => {
    const { config, tokenizer } = await ctx.resources.prompts();
    const m = ctx.task.method;
    const largest = largestRank(m);
    const rank = trainedRank(ctx.task, ctx.resources.store);
    if (rank < largest && !m.hetero)
      throw new MethodError(
        "method_invalid",
        `this client trains at most rank ${rank} (ADAPTER_RANK); without method.hetero, every client trains ranks up to ${largest}`,
      );
    const words = labelWordTraining(m, tokenizer, ctx.task.local.maxTokens, "LoRA");
    const opts = { offloaded: ctx.placement === "endpoint", seed: ctx.task.seed + ctx.task.round, words };
    if (m.hetero?.rule === "flora") {
      // Fresh factors of the client's rank on top of the version, the version's ranks frozen.
      const r = Math.min(rank, m.r);
      const start = floraStart(m, config, ctx.global, r, ctx.task.seed * 7919 + ctx.task.round);
      const plan = { ...loraPlan(m, config, { ...opts, rank: m.r + r }), mask: floraMask(m.r, m.r + r) };
      return gradientSlice({ ...ctx, global: start }, plan, (params) => freshFactors(params, ctx.global, r));
    }
    const start = rank === largest ? ctx.global : truncateVersion(ctx.global, rank);
    const plan = loraPlan(m, config, rank === largest ? opts : { ...opts, rank });
    const prune = m.hetero?.prune;
    if (!prune) return gradientSlice({ ...ctx, global: start }, plan);
    // HetLoRA's self-pruning: the tail a prune would drop is penalised, and dropped if it shrank in training.
    const to = prunedRank(prune, rank);
    return gradientSlice({ ...ctx, global: start }, { ...plan, penalty: tailPenalty(prune, start, to) }, (params, delta) => {
      const kept = tailScore(start, to, (name) => params.get(graphName(name))!) < tailScore(start, to) ? to : rank;
      if (kept < rank) holdRank(ctx.resources.store, { round: ctx.task.round, from: rank, to: kept });
      // The change's first `kept` ranks, as a version is cut for a client of that rank.
      const { tensors, shapes } = truncateVersion({ tensors: delta, shapes: start.shapes, metadata: {} }, kept);
      // The upload's rank as the aggregator reads it: its A's most rows (a module of a lower pattern rank sends that).
      const sent = Math.max(...[...shapes].filter(([name]) => name.endsWith(".lora_A.weight")).map(([, s]) => s[0]!));
      return { tensors, shapes, metrics: { lora_rank: sent } };
    });
  },
  // The held-out completion loss of the base model with the version's adapter, as `fedflare run` scores it
  // (lora/run.ts), and, where the held-out completions are a few labels each given several times (a
  // classification task's), the accuracy of the most probable label. Only where the client holds the whole
  // model: a split client's trunk is the endpoint's.
  evaluate: async (m, ctx, version, resources) => {
    if (ctx.placement !== "local") return null;
    const held = await resources.heldOut(ctx.maxTokens);
    if (!held?.examples.length) return null;
    const heldOut = held.examples;
    const { config } = await resources.prompts();
    const lora = versionPairs(m, version.tensors);
    const forward = await ForwardModel.create(resources.runtime, config, await resources.weights(undefined, true), {
      kind: "forward",
      quant: ctx.quant,
      nll: true,
      lora,
    });
    try {
      if (m.labels) {
        // Trained on the label words: scored by them, the loss their cross-entropy, over the records of the labels.
        const labels = m.labels;
        const items = labeledPrompts(held.raw).filter((x) => labels.includes(x.label));
        if (!items.length) return null;
        const { tokenizer } = await resources.prompts();
        const words = labelWordsOf({ labels, labelWords: m.labelWords });
        const scored = await labelAccuracy(forward, tokenizer, items, labels, { maxTokens: ctx.maxTokens, words });
        return { numExamples: items.length, metrics: { loss: scored.crossEntropy, accuracy: scored.accuracy } };
      }
      const { loss } = await heldOutLoss(forward, heldOut);
      const labeled = held.raw.flatMap((e) => ("prompt" in e ? [{ prompt: e.prompt, label: e.completion }] : []));
      const labels = [...new Set(labeled.map((x) => x.label))].sort();
      const metrics: Record<string, number> = { loss };
      if (labeled.length === held.raw.length && labels.length >= 2 && labels.length <= 8 && labels.length * 2 <= labeled.length) {
        const { tokenizer } = await resources.prompts();
        metrics.accuracy = (await labelAccuracy(forward, tokenizer, labeled, labels, { maxTokens: ctx.maxTokens })).accuracy;
      }
      return { numExamples: heldOut.length, metrics };
    } finally {
      await forward.release();
    }
  },
};
