// FedBPT's client side (Sun et al. 2024): CMA-ES generations over BBT's subspace, one per invocation,
// scored on the client's own weights or at the endpoint that holds the model (only token ids and each
// candidate's z go out; the endpoint makes the prompt).
import { shuffled } from "../../../data/lm-windows.ts";
import { roundStream } from "../../../engine/sampling.ts";
import { cmaParameters } from "../../cma/cma-es.ts";
import { updateMetadata } from "../../client/upload.ts";
import { encodeTensorFile } from "../../tensor-file.ts";
import type { ClientMethod } from "../method.ts";
import { labeledFor } from "../shared/labeled.ts";
import { FedBptConfig } from "./config.ts";
import { type BbtClientState, bbtDelta, bbtGenerations, bbtGlobalOf, endpointPromptScorer, localPromptScorer, startBbt } from "./search.ts";

export const fedbptClient: ClientMethod<FedBptConfig> = {
  type: "fedbpt",
  config: FedBptConfig,
  placement: (_m, offers) => (offers.endpoint ? "endpoint" : "local"),
  // A round is its generations; each scores its population (twice with perturbation) on a batch, every label.
  demands: (m, local, placement) => ({
    steps: m.generations,
    remoteRows:
      placement === "endpoint"
        ? m.generations * (m.population ?? cmaParameters(m.dimension).lambda) * (m.perturb > 0 ? 2 : 1) * local.batchSize * m.labels.length
        : 0,
  }),
  async slice({ task, placement, global, saved, save, resources }) {
    const m = task.method;
    const atEndpoint = placement === "endpoint";
    // At an endpoint the client holds the tokenizer and its data, no weights.
    const local = atEndpoint ? null : await resources.model(undefined, task.local.maxTokens);
    const prompts = await resources.prompts();
    const labeled = labeledFor(local ? local.raw : prompts.raw, m.labels);
    const start = bbtGlobalOf(global.tensors);
    let state = saved ? (JSON.parse(new TextDecoder().decode(saved)) as BbtClientState) : startBbt(start, task.seed + task.round);
    if (state.cma.generation < m.generations) {
      const space = { promptTokens: m.promptTokens, dimension: m.dimension, seed: task.federationSeed };
      const scorer = local
        ? await localPromptScorer(
            resources.runtime,
            local.model.config,
            local.model.weights,
            local.model.tokenizer,
            space,
            m,
            task.local.maxTokens,
            await resources.sessions(),
          )
        : endpointPromptScorer(await resources.endpoint(0), prompts.config, prompts.tokenizer, space, m, task.local.maxTokens);
      // Each generation scores its candidates on a seeded sample of local.batchSize examples.
      const itemsOf = (g: number) => shuffled(labeled, roundStream(task.seed, task.round, 0, g)).slice(0, task.local.batchSize);
      const noiseOf =
        m.perturb > 0 ? (g: number) => ({ rate: m.perturb, draws: () => roundStream(task.seed, task.round, 2, g) }) : undefined;
      state = await bbtGenerations(scorer, state, itemsOf, 1, m.population, noiseOf);
      await scorer.release();
      save(new TextEncoder().encode(JSON.stringify(state)), state.cma.generation);
      return null;
    }
    return encodeTensorFile(
      bbtDelta(start, state.cma),
      global.shapes,
      updateMetadata(labeled.length, {
        train_loss: state.lastBest,
        evaluations: state.evaluations,
        generations: state.cma.generation,
        download_bytes: task.downloadBytes,
      }),
    );
  },
};
