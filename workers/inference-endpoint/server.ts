// The reference inference endpoint as a Node server: a model from its HF folder on onnxruntime-node, with
// the CUDA provider where this onnxruntime build and the machine's CUDA libraries have it, CPU otherwise.
// A Node server rather than a Worker: Workers reach no GPU, and onnxruntime-node is where CUDA runs.
import { serve, type ServerType } from "@hono/node-server";
import { Batcher } from "../../src/engine/batcher.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import type { LoadedModel } from "../../src/engine/model-files.ts";
import { detectNodeProvider, ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { endpointApp } from "./app.ts";

export interface EndpointConfig {
  model: LoadedModel;
  name: string;
  port: number;
  host?: string;
  token?: string;
  maxBatch?: number;
  maxWaitMs?: number;
  threads?: number;
}

export interface RunningEndpoint {
  url: string;
  provider: "cuda" | "cpu";
  close(): Promise<void>;
}

export async function startEndpoint(c: EndpointConfig): Promise<RunningEndpoint> {
  const provider = await detectNodeProvider();
  const runtime = ortNodeRuntime(c.threads ?? 2, provider);
  const scorer = await ForwardModel.create(runtime, c.model.config, c.model.weights);
  const generator = await ForwardModel.create(runtime, c.model.config, c.model.weights, { kvCache: true });
  const V = c.model.config.vocabSize;
  // One forward pass for a whole batch: right-padded rows, each caller gets its own rows of logits.
  const forward = new Batcher<number[], Float32Array>(
    async (batch) => {
      const len = Math.max(...batch.map((ids) => ids.length));
      const { logits } = await scorer.run({ ids: batch.map((ids) => [...ids, ...Array<number>(len - ids.length).fill(0)]), mask: batch.map((ids) => ids.map(() => 1).concat(Array<number>(len - ids.length).fill(0))) });
      return batch.map((ids, b) => logits.slice(b * len * V, (b * len + ids.length) * V));
    },
    { maxBatch: c.maxBatch ?? 8, maxWaitMs: c.maxWaitMs ?? 5 },
  );
  const trunks = new Map<number, Promise<ForwardModel>>();
  const trunk = (layer: number) => {
    if (!trunks.has(layer)) trunks.set(layer, ForwardModel.create(runtime, c.model.config, c.model.weights, { hiddenAfter: layer }));
    return trunks.get(layer)!;
  };
  const app = endpointApp({ engine: { name: c.name, model: c.model, forward, generator, lock: { tail: Promise.resolve() }, trunk }, ...(c.token ? { token: c.token } : {}), provider, maxBatch: c.maxBatch ?? 8, maxWaitMs: c.maxWaitMs ?? 5 });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: c.port, hostname: c.host ?? "127.0.0.1" }, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : c.port;
  return {
    url: `http://${c.host ?? "127.0.0.1"}:${port}`,
    provider,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
