// FedKSeed's client side (Qin et al. 2024): the round starts from this client's copy of the global model,
// brought to the round's version by the per-seed changes it missed; zeroth-order steps then run on its own
// weights, or at the endpoint that holds the model (the client sends seed terms, never tensors).
import { wordIds } from "../../../engine/train/evaluate.ts";
import { readSafetensorsHeader } from "../../../protocol/safetensors.ts";
import { decodeZoState, decodeZoTermsState, encodeZoState, encodeZoTermsState } from "./state-file.ts";
import { updateMetadata } from "../../client/upload.ts";
import { encodeTensorFile, decodeTensorFile } from "../../tensor-file.ts";
import type { TensorMap } from "../../tensors.ts";
import type { ClientMethod, ClientResources, ClientTask } from "../method.ts";
import { labelWordsOf } from "../shared/config-fields.ts";
import { FedKSeedConfig } from "./config.ts";
import { globalTerms, seedPool, type SeedTerms } from "./seed-pool.ts";
import { decodeSeedSums, encodeSeedSums } from "./seed-sums.ts";
import { type SeedChange, seedChangesTo } from "./seed-sync.ts";
import { endpointZoEvaluator } from "./zo-endpoint.ts";
import { startZo, zoGlobal, zoInitial, zoLocalSteps, zoMetrics, zoSteps, type ZoState, type ZoTask } from "./zo-update.ts";

/** This client's copy of the federation's global model and the seeds' history, kept across rounds. */
const MODEL = "fedkseed-model";

/** FedKSeed-Pro's history: each seed's per-round aggregated scalars, as this client has seen them. */
function seedHistory(resources: ClientResources, k: number): number[][] | undefined {
  const saved = resources.store.get(MODEL);
  if (!saved) return undefined;
  // Only the metadata: the model's tensors in the same blob are not needed here.
  const byIndex = new Map(JSON.parse(readSafetensorsHeader(saved).metadata.history ?? "[]") as [number, number[]][]);
  return Array.from({ length: k }, (_, j) => byIndex.get(j) ?? []);
}

/**
 * Brings this client's copy of the global model (kept with the version it is at) to `version` by applying
 * each later round's sparse per-seed change, and records those changes as the seeds' history
 * (FedKSeed-Pro). Only the rounds it missed cross the wire. A client whose model lives at an endpoint
 * keeps only the history; its model is the terms the cumulative scalars make.
 */
async function syncSeeds(task: ClientTask<FedKSeedConfig>, atEndpoint: boolean, resources: ClientResources, federationPath: string) {
  const saved = resources.store.get(MODEL);
  const cached = saved ? decodeTensorFile(saved, "FedKSeed model") : null;
  const version = task.baseVersion;
  // A cache written at an endpoint holds no tensors: a local client starts over from w0.
  const usable = cached !== null && Number(cached.metadata.version) <= version && (atEndpoint || cached.tensors.size > 0);
  const at = usable ? Number(cached.metadata.version) : 0;
  const m = task.method;
  let bytes = 0;
  const change: SeedChange = async (v, since) => {
    const diff = await resources.download(`${federationPath}/versions/${v}/seeds?since=${since}`, `the seed changes of version ${v}`);
    if (diff === null) return null;
    bytes += diff.length;
    return decodeSeedSums(diff, m.k, `version ${v}`).sums;
  };
  const sync = await seedChangesTo(change, at, version);
  const fresh = sync.fromScratch || at === 0;
  const initial = async () => {
    const { model } = await resources.model(undefined, task.local.maxTokens);
    return zoInitial(model.config, model.weights, m.trains, task.federationSeed);
  };
  let params: TensorMap | null = fresh ? (atEndpoint ? null : await initial()) : atEndpoint ? null : cached!.tensors;
  const byIndex = new Map(fresh ? [] : (JSON.parse(cached!.metadata.history ?? "[]") as [number, number[]][]));
  for (const sums of sync.changes) {
    if (params) params = zoGlobal(params, task, sums);
    for (const [j, v] of sums) byIndex.set(j, [...(byIndex.get(j) ?? []), v]);
  }
  resources.store.put(
    MODEL,
    encodeTensorFile(params ?? new Map(), new Map(), { format: "pt", version: String(version), history: JSON.stringify([...byIndex]) }),
  );
  const cumulative = new Map([...byIndex].map(([j, vs]) => [j, vs.reduce((a, b) => a + b, 0)]));
  return { params, terms: globalTerms(seedPool(task.federationSeed, m.k), cumulative, task.local.lr), bytes };
}

export const fedkseedClient: ClientMethod<FedKSeedConfig> = {
  type: "fedkseed",
  config: FedKSeedConfig,
  placement: (_m, offers) => (offers.endpoint ? "endpoint" : "local"),
  // Each step scores two points, over every label with labels.
  demands: (m, local, placement) => ({
    steps: local.steps,
    remoteRows: placement === "endpoint" ? local.steps * 2 * local.batchSize * (m.labels?.length ?? 1) : 0,
  }),
  async start(task, placement, resources) {
    const federationPath = `/federations/${encodeURIComponent(task.federationId)}`;
    const synced = await syncSeeds(task, placement === "endpoint", resources, federationPath);
    // At an endpoint the start is the global model as seed terms; locally, its tensors.
    const start = synced.params
      ? encodeTensorFile(synced.params, new Map())
      : encodeTensorFile(new Map(), new Map(), { format: "pt", terms: JSON.stringify(synced.terms) });
    return { start, downloadBytes: synced.bytes };
  },
  async slice({ task, placement, global, saved, perInvocation, save, resources }) {
    const m = task.method;
    const atEndpoint = placement === "endpoint";
    const { tokenizer, examples } = atEndpoint
      ? await resources.tokenized(task.local.maxTokens)
      : await (async () => {
          const r = await resources.model(undefined, task.local.maxTokens);
          return { tokenizer: r.model.tokenizer, examples: r.examples };
        })();
    const zoTask: ZoTask = {
      ...task,
      method: m,
      ...(m.labels
        ? {
            labelIds: wordIds(tokenizer, m.labels),
            wordIds: wordIds(tokenizer, labelWordsOf({ labels: m.labels, labelWords: m.labelWords })),
          }
        : {}),
    };
    // A zeroth-order step scores two points (each over every label with labels): about four times a
    // gradient step's forward work, so an invocation takes a quarter of the steps.
    const steps = Math.max(1, Math.floor(perInvocation / 4));
    const history = seedHistory(resources, m.k);
    let state: ZoState<unknown>;
    if (atEndpoint) {
      let at = saved ? decodeZoTermsState(saved) : startZo<SeedTerms>(JSON.parse(global.metadata.terms ?? "[]") as SeedTerms);
      if (at.step < task.local.steps) {
        at = await zoSteps(endpointZoEvaluator(await resources.endpoint(0), m, task.federationSeed), zoTask, examples, at, steps, history);
        save(encodeZoTermsState(at), at.step);
        return null;
      }
      state = at;
    } else {
      let at = saved ? decodeZoState(saved) : startZo(global.tensors);
      if (at.step < task.local.steps) {
        const { model } = await resources.model(undefined, task.local.maxTokens);
        at = await zoLocalSteps(
          { config: model.config, weights: model.weights, runtime: resources.runtime, sessions: await resources.sessions() },
          zoTask,
          examples,
          at,
          steps,
          history,
        );
        save(encodeZoState(at), at.step);
        return null;
      }
      state = at;
    }
    return encodeSeedSums(state.sums, updateMetadata(examples.length, { ...zoMetrics(state), download_bytes: task.downloadBytes }));
  },
};
