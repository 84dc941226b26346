import { readdirSync } from "node:fs";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadModel } from "../../src/engine/model-files.ts";
import { modelFingerprint, startEndpoint } from "../../workers/inference-endpoint/server.ts";
import { dirSource } from "../model-dir.ts";
import { DEFAULT_THREADS, port, positiveInt, threads } from "../numbers.ts";
import { UsageError } from "../usage.ts";

export const endpointUsage =
  `fedflare endpoint --model DIR [--port 8000] [--host 127.0.0.1] [--max-batch 8] [--max-wait-ms 5] ` +
  `[--threads 2] [--no-auth]
  Serves the model with an OpenAI-compatible API (GET /v1/models, POST /v1/completions) on onnxruntime-node,
  CUDA where available; GET /health with the token reports the provider. Requests must carry the bearer token
  in FEDFLARE_ENDPOINT_TOKEN; it refuses to start without one unless --no-auth (anyone reaching the port may use it).`;

export async function endpoint(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      port: { type: "string", default: "8000" },
      host: { type: "string", default: "127.0.0.1" },
      "max-batch": { type: "string", default: "8" },
      "max-wait-ms": { type: "string", default: "5" },
      threads: { type: "string", default: DEFAULT_THREADS },
      "no-auth": { type: "boolean", default: false },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model DIR is required");
  const token = process.env.FEDFLARE_ENDPOINT_TOKEN || undefined;
  if (token && values["no-auth"])
    throw new UsageError("FEDFLARE_ENDPOINT_TOKEN is set and --no-auth given: unset the token or drop --no-auth");
  if (!token && !values["no-auth"])
    throw new UsageError(
      "set FEDFLARE_ENDPOINT_TOKEN to the bearer token clients must send (e.g. openssl rand -hex 32), " +
        "or pass --no-auth to serve without one",
    );
  // The numbers first: a typo should not wait for the model to load.
  const serving = {
    port: port(values.port),
    host: values.host,
    maxBatch: positiveInt("max-batch", values["max-batch"]),
    maxWaitMs: positiveInt("max-wait-ms", values["max-wait-ms"], 0),
    threads: threads(values.threads),
  };
  const source = dirSource(values.model);
  const model = await loadModel(source);
  const fingerprint = await modelFingerprint(
    (f) => source.read(f),
    readdirSync(values.model).filter((f) => /\.(json|safetensors)$/.test(f)),
  );
  const running = await startEndpoint({
    model,
    fingerprint,
    name: basename(resolve(values.model)),
    ...serving,
    ...(token ? { token } : { noAuth: true }),
  }).catch((e: Error) => {
    // A port in use or a host that does not resolve: the user's to change.
    throw (e.cause as NodeJS.ErrnoException | undefined)?.code ? new UsageError(e.message) : e;
  });
  process.stderr.write(
    `serving ${basename(resolve(values.model))} on ${running.url}/v1 (${running.provider}${
      token ? ", bearer token from FEDFLARE_ENDPOINT_TOKEN required" : ", --no-auth: no token, anyone reaching the port may use it"
    })\n`,
  );
  await new Promise<void>((done) => process.once("SIGINT", () => void running.close().then(done)));
}
