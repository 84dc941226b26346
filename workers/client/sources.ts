// Where a client's model and data live: an R2 bucket holding the Hugging Face folder and the partition.
import { parseJsonl, type Example } from "../../src/data/jsonl.ts";
import type { ModelSource } from "../../src/engine/model-files.ts";
import type { ClientEnv } from "./env.ts";

export function r2ModelSource(env: ClientEnv): ModelSource {
  const prefix = env.MODEL_PREFIX ?? "";
  return {
    location: `r2://MODEL/${prefix}`,
    async read(name) {
      const obj = await env.MODEL.get(prefix + name);
      return obj ? new Uint8Array(await obj.arrayBuffer()) : null;
    },
  };
}

export async function loadPartition(env: ClientEnv): Promise<Example[]> {
  const key = env.DATA_KEY ?? "partition.jsonl";
  const obj = await env.DATA.get(key);
  if (!obj) throw new Error(`the DATA bucket has no ${key}: upload this client's partition there`);
  return parseJsonl(await obj.text(), `r2://DATA/${key}`);
}

/** A request to the coordinator, over the service binding when there is one. */
export function coordinatorFetch(env: ClientEnv, path: string, init?: RequestInit): Promise<Response> {
  if (env.COORDINATOR) return env.COORDINATOR.fetch(`https://coordinator${path}`, init);
  if (!env.COORDINATOR_URL) throw new Error("set COORDINATOR (a service binding) or COORDINATOR_URL");
  return fetch(new URL(path, env.COORDINATOR_URL), init);
}
