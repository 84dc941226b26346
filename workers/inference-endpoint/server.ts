// The reference inference endpoint as a Node server: a model from its HF folder on onnxruntime-node, with
// the CUDA provider where this onnxruntime build and the machine's CUDA libraries have it, CPU otherwise.
// A Node server rather than a Worker: Workers reach no GPU, and onnxruntime-node is where CUDA runs.
import { serve, type ServerType } from "@hono/node-server";
import { Batcher } from "../../src/engine/batcher.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import type { LoadedModel } from "../../src/engine/model-files.ts";
import { scorePrompts, type PromptToScore } from "../../src/engine/score.ts";
import { detectNodeProvider, ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { endpointApp } from "./app.ts";
import { endpointLimits, type EndpointLimits } from "./limits.ts";
import { SessionCache } from "./session-cache.ts";
import { bearerToken } from "../../src/protocol/bearer.ts";
import { sha256, sha256Hex } from "../../src/protocol/hex.ts";

export interface EndpointConfig {
  model: LoadedModel;
  /** Identifies the exact model and tokenizer (see modelFingerprint); clients key their caches by it. */
  fingerprint: string;
  name: string;
  port: number;
  host?: string;
  /** The bearer token every /v1 request must carry; required unless `noAuth`. */
  token?: string;
  /** Serve without a token: anyone who reaches the port may use the model. */
  noAuth?: boolean;
  /** Overrides of ENDPOINT_LIMITS. */
  limits?: Partial<EndpointLimits>;
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
  if (c.noAuth && c.token) throw new Error("startEndpoint: give a token or noAuth: true, not both");
  if (!c.noAuth && !c.token)
    throw new Error(
      "startEndpoint: a token is required (every /v1 request must carry it as a bearer token); pass noAuth: true to serve without one",
    );
  // A token no request could carry (bearerToken's shape) would lock every caller out.
  if (c.token && bearerToken(`Bearer ${c.token}`) !== c.token)
    throw new Error("startEndpoint: the token must be 1-512 visible ASCII characters, without spaces (a bearer token)");
  const limits = endpointLimits(c.limits);
  const provider = await detectNodeProvider();
  const runtime = ortNodeRuntime(c.threads ?? 2, provider);
  // The prompts' log-probs and top alternatives come out of the graph (ForwardGraph.logprobs): the
  // endpoint never runs a pass over the vocabulary per token, nor copies out the logits.
  const scorer = await ForwardModel.create(runtime, c.model.config, c.model.weights, { kind: "forward", logprobs: true });
  const generator = await ForwardModel.create(runtime, c.model.config, c.model.weights, { kind: "step" });
  // One forward pass for the prompts of every request waiting, up to maxBatch.
  const forward = new Batcher((batch: PromptToScore[]) => scorePrompts(scorer, batch), {
    maxBatch: c.maxBatch ?? 8,
    maxWaitMs: c.maxWaitMs ?? 5,
  });
  const sessions = new SessionCache<ForwardModel>(limits.maxSessions);
  const engine = {
    name: c.name,
    fingerprint: c.fingerprint,
    model: c.model,
    forward,
    generator,
    lock: { tail: Promise.resolve() },
    served: { hiddenStateRows: 0 },
    runtime,
    sessions,
  };
  const app = endpointApp({ engine, token: c.token ?? null, provider, limits, maxBatch: c.maxBatch ?? 8, maxWaitMs: c.maxWaitMs ?? 5 });
  // A port in use or a host that does not resolve rejects the start, naming them, rather than crashing later.
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: c.port, hostname: c.host ?? "127.0.0.1" }, () => resolve(s));
    s.once("error", (e: NodeJS.ErrnoException) =>
      reject(new Error(`the endpoint cannot listen on ${c.host ?? "127.0.0.1"}:${c.port}: ${e.message}`, { cause: e })),
    );
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : c.port;
  return {
    url: `http://${c.host ?? "127.0.0.1"}:${port}`,
    provider,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      sessions.clear();
      await Promise.all([scorer.release(), generator.release()]);
    },
  };
}

/** SHA-256 over a model folder's config, tokenizer and weight files: changes whenever any of them does. */
export async function modelFingerprint(read: (name: string) => Promise<Uint8Array | null>, files: readonly string[]): Promise<string> {
  const parts: Uint8Array[] = [];
  for (const f of [...files].sort()) {
    const bytes = await read(f);
    if (bytes) parts.push(new TextEncoder().encode(`${f}\n`), await sha256(bytes));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return sha256Hex(all);
}
