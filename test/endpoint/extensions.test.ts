// A deployment's own endpoint extension (EndpointExtension, src/fl/methods/method.ts): added to the
// registry before the endpoint starts, it is served behind the endpoint's stage (token, schema, model,
// limits), counted by /health under its counter and documented in the OpenAPI document; the registry
// refuses a path outside /v1/ or one already taken, and a counter already used.
import { rmSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { tokenIds } from "../../src/engine/scored-rows.ts";
import { MAX_SCORED_ROWS } from "../../src/fl/client/endpoint-scores.ts";
import { EndpointExtensions, endpointExtensions } from "../../src/fl/methods/endpoint.ts";
import type { EndpointExtension } from "../../src/fl/methods/method.ts";
import { endpointApp } from "../../workers/inference-endpoint/app.ts";
import type { Engine } from "../../workers/inference-endpoint/completions.ts";
import { endpointLimits } from "../../workers/inference-endpoint/limits.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const LastIds = v.object({ model: v.string(), input_ids: v.pipe(v.array(tokenIds), v.minLength(1)) });

/** Each row's last token id: no model work, so what is tested is the endpoint's handling of an extension. */
const lastIds: EndpointExtension<v.InferOutput<typeof LastIds>> = {
  path: "/v1/last-ids",
  request: LastIds,
  counter: "last_id_rows",
  measure: (_, req) => ({ rows: req.input_ids.map((r) => r.length), rowsField: "input_ids" }),
  answer: async (engine, req) => Response.json({ model: engine.name, last: req.input_ids.map((r) => r.at(-1)) }),
  openapi: { schema: "LastIdsRequest", summary: "each row's last id", description: "a test's extension", answer: "{model, last}" },
};
endpointExtensions.add(lastIds);

const root = tempDir("extensions");
const config = tinyConfig();
let endpoint: RunningEndpoint;

beforeAll(async () => {
  const model = await loadModel(dirSource(writeHfModel(join(root, "tiny"), config, tinyWeights(config, 5))));
  endpoint = await startEndpoint({ model, fingerprint: "fp", name: "tiny", port: 0, token: "t" });
});
afterAll(async () => {
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

const post = (body: unknown, token = "t") =>
  fetch(`${endpoint.url}/v1/last-ids`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
const health = async () =>
  (await (await fetch(`${endpoint.url}/health`, { headers: { authorization: "Bearer t" } })).json()) as Record<string, unknown>;

describe("a deployment's endpoint extension", () => {
  it("is answered, and /health counts its rows under its counter beside the built-in extensions'", async () => {
    const res = await post({ model: "tiny", input_ids: [[1, 2, 3], [4]] });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ model: "tiny", last: [3, 4] });
    expect(await health()).toMatchObject({ last_id_rows: 2, perturbed_rows: 0, prompt_rows: 0 });
  });

  it.each([
    ["without the token", { model: "tiny", input_ids: [[1]] }, "nope", 401, "invalid_api_key"],
    ["with a body its schema refuses", { model: "tiny", input_ids: [] }, "t", 400, "invalid_request"],
    ["for another model", { model: "gpt-4", input_ids: [[1]] }, "t", 404, "model_not_found"],
    [
      "over the row limit its demand is held to",
      { model: "tiny", input_ids: Array(MAX_SCORED_ROWS + 1).fill([1]) },
      "t",
      413,
      "too_many_rows",
    ],
  ])("passes the endpoint's stage: refused %s", async (_, body, token, status, code) => {
    const before = (await health()).last_id_rows;
    const res = await post(body, token);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
    expect((await health()).last_id_rows).toBe(before);
  });

  it("is in the OpenAPI document, its request schema generated from its valibot schema", async () => {
    const doc = (await (await fetch(`${endpoint.url}/openapi.json`)).json()) as {
      paths: Record<string, { post: { summary: string } }>;
      components: { schemas: Record<string, { properties: Record<string, unknown> }> };
    };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/perturbed-scores", "/v1/prompt-scores", "/v1/last-ids"]));
    expect(doc.paths["/v1/last-ids"]!.post.summary).toBe("each row's last id");
    expect(Object.keys(doc.components.schemas.LastIdsRequest!.properties)).toEqual(["model", "input_ids"]);
  });
});

describe("the registry and the endpoint refuse", () => {
  it.each([
    ["a path outside /v1/, where no token is checked", { path: "/last-ids", counter: "other_rows" }, /must be under \/v1\//],
    ["a path already registered", { path: "/v1/last-ids", counter: "other_rows" }, /at \/v1\/last-ids is already registered/],
    [
      "a counter already used",
      { path: "/v1/other", counter: "last_id_rows" },
      /at \/v1\/last-ids already counts its rows as "last_id_rows"/,
    ],
  ])("%s", (_, change, message) => {
    const registry = new EndpointExtensions([lastIds]);
    expect(() => registry.add({ ...lastIds, ...change })).toThrow(message);
  });

  it("an extension at a route the endpoint serves itself, which it would never reach", () => {
    endpointExtensions.add({ ...lastIds, path: "/v1/completions", counter: "completion_rows" });
    // Routes are registered before any request, so no engine is touched.
    const o = { engine: {} as Engine, token: null, provider: "cpu" as const, limits: endpointLimits(), maxBatch: 1, maxWaitMs: 1 };
    expect(() => endpointApp(o)).toThrow(/at \/v1\/completions takes a route the endpoint serves itself/);
  });
});
