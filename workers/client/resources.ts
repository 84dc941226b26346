// What this client's deployment lends a method's work (ClientResources in src/fl/methods/method.ts): the
// model from R2 with only the layers asked for, the partition tokenized, the endpoint and completions
// API it was configured with, ORT sessions and trunk states kept across slices, and its storage.
import { tokenizeExample, type TokenizedExample } from "../../src/data/examples.ts";
import type { Example } from "../../src/data/jsonl.ts";
import type { LlamaConfig } from "../../src/engine/config.ts";
import { loadConfig, loadModel, loadModelTokenizer, loadWeights, type LoadedModel } from "../../src/engine/model-files.ts";
import type { TextTokenizer } from "../../src/engine/tokenizer/load.ts";
import { JobSessions } from "../../src/engine/runtime.ts";
import { connectTrunk, type TrunkCache } from "../../src/fl/client/trunk-states.ts";
import type { ClientResources } from "../../src/fl/methods/method.ts";
import { readBlob, writeBlob } from "../../durable-objects/shared/blobs.ts";
import { federationStore } from "./federation-store.ts";
import { workerdOrtRuntime } from "../lib/ort-workerd.ts";
import type { ClientEnv } from "./env.ts";
import { failure } from "../../src/fl/client/transient.ts";
import { coordinatorFetch, loadHeldOut, loadPartition, r2ModelSource, readResponse } from "./sources.ts";

/** A partition's records as token ids (EOS after each text or completion), cut to maxTokens and the model's context. */
function tokenizePartition(raw: readonly Example[], tok: TextTokenizer, config: LlamaConfig, maxTokens: number): TokenizedExample[] {
  const eos = config.eosTokenIds[0] ?? 0;
  return raw.map((e) => tokenizeExample(e, tok, eos, Math.min(maxTokens, config.maxPositions)));
}

/** What one trainer instance keeps while it lives (reloaded after eviction): the model, the prompts, the sessions. */
export class ModelCache {
  private model: { model: LoadedModel; examples: TokenizedExample[]; raw: Example[]; key: string } | null = null;
  private prompts: { tokenizer: TextTokenizer; config: LlamaConfig; raw: Example[]; tokenized: Map<number, TokenizedExample[]> } | null =
    null;
  /** Sessions (training and forward), kept between a job's slices and reused by the next round's job. */
  private readonly sessions = new JobSessions();
  private sessionsJob = "";

  /**
   * The resources of one job's slice. `download` spends what is left of the round's download budget;
   * `store` is this client's own storage of the federation.
   */
  resources(
    env: ClientEnv,
    sql: SqlStorage,
    job: { federationId: string; createdAt: number; key: string },
    download: ClientResources["download"],
  ): ClientResources {
    const source = r2ModelSource(env);
    const prompts = async () => {
      this.prompts ??= {
        tokenizer: await loadModelTokenizer(source),
        config: await loadConfig(source),
        raw: await loadPartition(env),
        tokenized: new Map(),
      };
      return this.prompts;
    };
    const trunkCache: TrunkCache = {
      get: async (key) => {
        const bytes = readBlob(sql, `trunk/${key}`);
        return bytes ? new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) : null;
      },
      put: async (key, states) => writeBlob(sql, `trunk/${key}`, new Uint8Array(states.buffer, states.byteOffset, states.byteLength)),
    };
    return {
      runtime: workerdOrtRuntime(),
      model: async (layers, maxTokens) => {
        const key = JSON.stringify([maxTokens, layers ?? "all"]);
        if (this.model?.key !== key) {
          const model = await loadModel(source, layers ? { layers: [...layers] } : {});
          const raw = await loadPartition(env);
          this.model = { model, examples: tokenizePartition(raw, model.tokenizer, model.config, maxTokens), raw, key };
        }
        return this.model;
      },
      weights: async (layers, embedding) =>
        loadWeights(source, (await prompts()).config, { ...(layers ? { layers: [...layers] } : {}), embedding }),
      prompts,
      tokenized: async (maxTokens) => {
        const p = await prompts();
        if (!p.tokenized.has(maxTokens)) p.tokenized.set(maxTokens, tokenizePartition(p.raw, p.tokenizer, p.config, maxTokens));
        return { tokenizer: p.tokenizer, examples: p.tokenized.get(maxTokens)! };
      },
      heldOut: async (maxTokens) => {
        const raw = await loadHeldOut(env);
        if (!raw) return null;
        const p = await prompts();
        return { raw, examples: tokenizePartition(raw, p.tokenizer, p.config, maxTokens) };
      },
      endpoint: (hiddenSize) => {
        if (!env.TRUNK_URL)
          throw new Error("this method runs at an inference endpoint: set TRUNK_URL (and TRUNK_TOKEN) in this client's deployment");
        return connectTrunk(env.TRUNK_URL, hiddenSize, env.TRUNK_TOKEN);
      },
      completions: (modelName) => {
        if (!env.OPENAI_BASE_URL)
          throw new Error(
            "this method scores prompts at an OpenAI-compatible API: set OPENAI_BASE_URL (and OPENAI_API_KEY) in this client's deployment",
          );
        return {
          baseURL: env.OPENAI_BASE_URL,
          ...(env.OPENAI_API_KEY ? { apiKey: env.OPENAI_API_KEY } : {}),
          model: env.OPENAI_MODEL ?? modelName,
        };
      },
      sessions: async () => {
        if (this.sessionsJob !== job.key) {
          this.sessions.startJob();
          this.sessionsJob = job.key;
        }
        return this.sessions;
      },
      trunkCache,
      store: federationStore(sql, job.federationId, job.createdAt),
      download,
    };
  }
}

/**
 * A download budget for one round: signed GETs of coordinator paths, each body refused past what is
 * left of the owner's MAX_DOWNLOAD_BYTES as it is read.
 */
export function downloads(env: ClientEnv, limit: number, round: number): { get: ClientResources["download"]; spent: () => number } {
  let spent = 0;
  return {
    spent: () => spent,
    get: async (path, what) => {
      const res = await coordinatorFetch(env, path);
      if (res.status === 404) return null;
      if (!res.ok) throw await failure(`fetching ${what}`, res);
      const left = limit - spent;
      const bytes = await readResponse(
        res,
        left,
        (size) =>
          `${what} is ${size}, over the ${left} bytes left of this client's MAX_DOWNLOAD_BYTES (${limit}) for round ${round}: ` +
          `its owner raises MAX_DOWNLOAD_BYTES in its wrangler.toml [vars] to take this task`,
      );
      spent += bytes.length;
      return bytes;
    },
  };
}
