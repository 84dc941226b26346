// What the client-memory benches give the clients they measure: a model folder's files for their buckets,
// the inference endpoint over the same model (in this process, outside what is measured) and a spam
// partition.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { spamAssassinSplit } from "../../cli/corpora.ts";
import { randomToken } from "../../cli/local-federation.ts";
import { dirSource } from "../../cli/model-dir.ts";
import type { Example } from "../../src/data/jsonl.ts";
import { spamTask } from "../../src/data/tasks/spam.ts";
import { type LoadedModel, loadModel } from "../../src/engine/model-files.ts";
import { modelFingerprint, startEndpoint } from "../../workers/inference-endpoint/server.ts";

export interface MeasuredModel {
  /** The folder's JSON and safetensors files, as a client's MODEL bucket holds them. */
  files: Map<string, Uint8Array>;
  /** Its config.json, as a federation config names it. */
  hfConfig: Record<string, unknown>;
  model: LoadedModel;
  /** The endpoint serving it (the clients' trunk or completions API), its token, and how to stop it. */
  endpoint: { url: string; token: string; close(): Promise<void> };
}

export async function measuredModel(dir: string, name: string): Promise<MeasuredModel> {
  const files = new Map(
    readdirSync(dir)
      .filter((f) => /\.(json|safetensors)$/.test(f))
      .map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))] as const),
  );
  const model = await loadModel(dirSource(dir));
  const token = randomToken();
  const server = await startEndpoint({
    model,
    fingerprint: await modelFingerprint(async (f) => files.get(f) ?? null, [...files.keys()]),
    name,
    port: 0,
    token,
  });
  return {
    files,
    hfConfig: JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>,
    model,
    endpoint: { url: server.url, token, close: () => server.close() },
  };
}

/** The records a measured client trains on: the spam task's first 32 SpamAssassin mails. */
export function spamPartition(): Example[] {
  return spamAssassinSplit()
    .task.slice(0, 32)
    .flatMap((r) => spamTask().examples(r));
}
