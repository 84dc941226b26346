// Discrete prompts' client side (BDPL; FedOne): policy-gradient steps over the slots' distributions,
// each prompt scored at an OpenAI-compatible completions API; the client holds only the tokenizer.
import { updateMetadata } from "../../client/upload.ts";
import { encodeTensorFile } from "../../tensor-file.ts";
import type { ClientMethod } from "../method.ts";
import { labelWordsOf } from "../shared/config-fields.ts";
import { labeledFor } from "../shared/labeled.ts";
import { completionsRowScorer } from "./completions-api.ts";
import { DiscreteConfig } from "./config.ts";
import { type DiscreteState, discreteDelta, discreteItems, discreteSteps, distributionsOf, promptTokens, startDiscrete } from "./round.ts";

export const discreteClient: ClientMethod<DiscreteConfig> = {
  type: "discrete",
  config: DiscreteConfig,
  placement: () => "api",
  demands: (m, local) => ({
    steps: local.steps,
    remoteRows: Math.min(m.queryBudget ?? Infinity, local.steps * m.population * local.batchSize * m.labels.length),
  }),
  async slice({ task, global, saved, perInvocation, save, resources }) {
    const m = task.method;
    const { tokenizer, raw } = await resources.prompts();
    const labeled = labeledFor(raw, m.labels);
    const api = resources.completions(task.modelName);
    const start = distributionsOf(global.tensors, m);
    let state = saved ? (JSON.parse(new TextDecoder().decode(saved)) as DiscreteState) : startDiscrete(start);
    if (state.step < task.local.steps && !state.exhausted) {
      const opts = {
        steps: task.local.steps,
        population: m.population,
        lr: task.local.lr,
        batchSize: task.local.batchSize,
        maxTokens: task.local.maxTokens,
        clientSeed: task.seed,
        round: task.round,
        ...(m.queryBudget ? { budget: m.queryBudget } : {}),
      };
      state = await discreteSteps(
        completionsRowScorer(api),
        promptTokens(tokenizer, m.phrases, labelWordsOf(m), m.placement),
        discreteItems(tokenizer, labeled, m.labels),
        state,
        perInvocation,
        opts,
      );
      save(new TextEncoder().encode(JSON.stringify(state)), state.step);
      return null;
    }
    const spent = {
      api_requests: state.usage.requests,
      api_rows: state.usage.rows,
      api_prompt_tokens: state.usage.promptTokens,
      steps: state.step,
      download_bytes: task.downloadBytes,
    };
    return encodeTensorFile(
      discreteDelta(start, state.distributions),
      global.shapes,
      updateMetadata(labeled.length, Number.isFinite(state.lastLoss) ? { train_loss: state.lastLoss, ...spent } : spent),
    );
  },
};
