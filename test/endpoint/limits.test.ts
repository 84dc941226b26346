// The endpoint facing a caller who asks too much: a token is required, and each limit (rows, positions,
// max_tokens, hidden-state bytes, perturbation work, sessions, concurrency, time) is refused before the
// work with a message naming it; a valid request still works afterwards.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirSource } from "../../cli/model-dir.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model-files.ts";
import { MAX_SCORED_ROWS } from "../../src/fl/client/endpoint-scores.ts";
import { ENDPOINT_LIMITS } from "../../workers/inference-endpoint/limits.ts";
import { startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { SessionCache } from "../../workers/inference-endpoint/session-cache.ts";
import { runCli } from "../cli/run-cli.ts";
import { tempDir, writeHfModel } from "../fixtures/hf-model.ts";
import { malformedBearers } from "../fixtures/malformed-bearer.ts";
import { tinyConfig, tinyWeights } from "../fixtures/tiny-llama.ts";

const root = tempDir("limits");
// A 512-position model, as the attacks were measured on.
const config = { ...tinyConfig({ heads: 4, kvHeads: 2 }), maxPositions: 512 };
const modelDir = writeHfModel(join(root, "tiny"), config, tinyWeights(config, 23));
const TOKEN = "limits-token";
let model: LoadedModel;
let endpoint: RunningEndpoint;

type Health = {
  status: string;
  model?: string;
  computing: number;
  queued: number;
  sessions: { cached: number; built: number; released: number };
  limits: Record<string, number>;
};
type ErrorBody = { error: { message: string; code: string; type: string } };

const post = (ep: RunningEndpoint, path: string, body: unknown, token: string | null = TOKEN) =>
  fetch(`${ep.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
const health = async (ep: RunningEndpoint) =>
  (await (await fetch(`${ep.url}/health`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as Health;
const ids = (n: number, from = 3) => Array.from({ length: n }, (_, i) => from + (i % 250));
const lora = (r: number, module = "q_proj") => ({ type: "lora", r, alpha: 2 * r, targetModules: [module], rslora: false });
const scoring = { model: "tiny", input_ids: [ids(6)], loss_mask: [[0, 0, 1, 1, 1, 1]] };
const valid: Record<string, unknown> = {
  "/v1/completions": { model: "tiny", prompt: [ids(5)], max_tokens: 1, echo: true, logprobs: 0 },
  "/v1/hidden-states": { model: "tiny", input_ids: [ids(5), ids(3)], layer: 1 },
  "/v1/perturbed-scores": { ...scoring, trains: lora(2), terms: [[7, 0.01]] },
  "/v1/prompt-scores": { ...scoring, prompt: { tokens: 4, dimension: 8, seed: 3, z: Array(8).fill(0.1) } },
};
/** The refusal's status and message, then that the same route still answers a valid request. */
async function refused(path: string, body: unknown, status: number, message: RegExp, code?: string) {
  const res = await post(endpoint, path, body);
  const answer = (await res.json()) as ErrorBody;
  expect(res.status, answer.error.message).toBe(status);
  expect(answer.error.message).toMatch(message);
  if (code) expect(answer.error.code).toBe(code);
  expect((await post(endpoint, path, valid[path])).status).toBe(200);
}

beforeAll(async () => {
  model = await loadModel(dirSource(modelDir));
  endpoint = await startEndpoint({
    model,
    fingerprint: "fp",
    name: "tiny",
    port: 0,
    token: TOKEN,
    limits: { maxSessions: 2, maxHiddenStateBytes: 4 << 20 },
  });
});
afterAll(async () => {
  await endpoint?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("the token", () => {
  it("is required to start, unless noAuth is given explicitly", async () => {
    await expect(startEndpoint({ model, fingerprint: "fp", name: "tiny", port: 0 })).rejects.toThrow(/a token is required.*noAuth: true/);
    await expect(startEndpoint({ model, fingerprint: "fp", name: "tiny", port: 0, token: "t", noAuth: true })).rejects.toThrow(/not both/);
    const open = await startEndpoint({ model, fingerprint: "fp", name: "tiny", port: 0, noAuth: true });
    try {
      expect((await fetch(`${open.url}/v1/models`)).status).toBe(200);
      expect(((await (await fetch(`${open.url}/health`)).json()) as Health).model).toBe("tiny");
    } finally {
      await open.close();
    }
  });

  it("is required by fedflare endpoint, which names --no-auth", async () => {
    const saved = process.env.FEDFLARE_ENDPOINT_TOKEN;
    delete process.env.FEDFLARE_ENDPOINT_TOKEN;
    try {
      const r = await runCli(["endpoint", "--model", modelDir, "--port", "0"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/FEDFLARE_ENDPOINT_TOKEN.*--no-auth/);
    } finally {
      if (saved !== undefined) process.env.FEDFLARE_ENDPOINT_TOKEN = saved;
    }
  });

  it("guards every /v1 route: none or a wrong one is 401", async () => {
    expect((await fetch(`${endpoint.url}/v1/models`)).status).toBe(401);
    const res = await post(endpoint, "/v1/completions", valid["/v1/completions"], null);
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorBody).error).toMatchObject({ code: "invalid_api_key", type: "authentication_error" });
    expect((await post(endpoint, "/v1/hidden-states", valid["/v1/hidden-states"], "wrong")).status).toBe(401);
    expect((await post(endpoint, "/v1/hidden-states", valid["/v1/hidden-states"])).status).toBe(200);
  });

  it("refuses a malformed Authorization header with 401, even around the right token, on /v1 and /health", async () => {
    for (const authorization of malformedBearers(TOKEN))
      for (const path of ["/v1/models", "/health"]) {
        const res = await fetch(`${endpoint.url}${path}`, { headers: { authorization } });
        expect([authorization, path, res.status, ((await res.json()) as ErrorBody).error.code]).toEqual([
          authorization,
          path,
          401,
          "invalid_api_key",
        ]);
      }
    expect((await fetch(`${endpoint.url}/v1/models`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });

  it("must have a bearer token's shape to start: one no header could carry is refused", async () => {
    for (const token of ["t".repeat(513), "two words", "tab\there"])
      await expect(startEndpoint({ model, fingerprint: "fp", name: "tiny", port: 0, token })).rejects.toThrow(
        /1-512 visible ASCII characters/,
      );
  });

  it("/health says only that the endpoint is up without it, everything with it, and 401 to a wrong one", async () => {
    expect(await (await fetch(`${endpoint.url}/health`)).json()).toEqual({ status: "ok" });
    expect((await fetch(`${endpoint.url}/health`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect(await health(endpoint)).toMatchObject({
      status: "ok",
      model: "tiny",
      fingerprint: "fp",
      limits: { ...ENDPOINT_LIMITS, maxSessions: 2, maxHiddenStateBytes: 4 << 20 },
    });
  });
});

describe("caps refused before computing, naming the limit", () => {
  it("keeps the clients' rows per scoring request within the row cap", async () => {
    expect(ENDPOINT_LIMITS.maxRows).toBeGreaterThanOrEqual(MAX_SCORED_ROWS);
    await expect(
      startEndpoint({ model, fingerprint: "fp", name: "tiny", port: 0, token: "t", limits: { maxRows: MAX_SCORED_ROWS - 1 } }),
    ).rejects.toThrow(/maxRows must be at least 256/);
  });

  it.each([
    ["/v1/completions", { model: "tiny", prompt: Array.from({ length: 2000 }, () => ids(4)), max_tokens: 1 }],
    ["/v1/hidden-states", { model: "tiny", input_ids: Array.from({ length: 2000 }, () => ids(4)), layer: 1 }],
    [
      "/v1/perturbed-scores",
      {
        ...scoring,
        input_ids: Array.from({ length: 2000 }, () => ids(6)),
        loss_mask: Array(2000).fill([0, 0, 1, 1, 1, 1]),
        trains: lora(2),
        terms: [],
      },
    ],
    [
      "/v1/prompt-scores",
      {
        ...scoring,
        input_ids: Array.from({ length: 2000 }, () => ids(6)),
        loss_mask: Array(2000).fill([0, 0, 1, 1, 1, 1]),
        prompt: { tokens: 4, dimension: 8, seed: 3, z: Array(8).fill(0.1) },
      },
    ],
  ])("2,000 rows to %s: 413 naming maxRows", async (path, body) => {
    await refused(path, body, 413, /2000 rows.*at most 256 a request \(maxRows\)/, "too_many_rows");
  });

  it("a 600-token prompt on a 512-position model: 400, never 500, on every route", async () => {
    const window = /needs 600 positions: this model's max_position_embeddings is 512/;
    await refused(
      "/v1/completions",
      { model: "tiny", prompt: [ids(600)], max_tokens: 0, echo: true, logprobs: 0 },
      400,
      window,
      "context_length_exceeded",
    );
    await refused(
      "/v1/hidden-states",
      { model: "tiny", input_ids: [ids(5), ids(600)], layer: 1 },
      400,
      /input_ids\[1\] needs 600 positions: this model's max_position_embeddings is 512/,
    );
    const mask = [0, ...Array(599).fill(1)];
    await refused(
      "/v1/perturbed-scores",
      { ...scoring, input_ids: [ids(600)], loss_mask: [mask], trains: lora(2), terms: [] },
      400,
      window,
    );
    await refused(
      "/v1/prompt-scores",
      {
        ...scoring,
        input_ids: [ids(600)],
        loss_mask: [mask],
        prompt: { tokens: 4, dimension: 8, seed: 3, placement: "suffix", z: Array(8).fill(0.1) },
      },
      400,
      window,
    );
  });

  it("counts what is added to a row: max_tokens after a prompt, a prefix soft prompt before a row", async () => {
    await refused(
      "/v1/completions",
      { model: "tiny", prompt: [ids(500)], max_tokens: 16 },
      400,
      /needs 516 positions \(500 tokens \+ 16 of max_tokens\): this model's max_position_embeddings is 512/,
    );
    const rows = { input_ids: [ids(510)], loss_mask: [[0, ...Array(509).fill(1)]] };
    await refused(
      "/v1/prompt-scores",
      { ...scoring, ...rows, prompt: { tokens: 4, dimension: 8, seed: 3, z: Array(8).fill(0.1) } },
      400,
      /needs 514 positions \(510 tokens \+ 4 soft prompt tokens\)/,
    );
  });

  it("text prompts too many or too long for the context: refused before they are tokenized, naming the cap", async () => {
    await refused(
      "/v1/completions",
      { model: "tiny", prompt: Array(1_000_000).fill("hi"), max_tokens: 1 },
      413,
      /1000000 rows.*at most 256 a request \(maxRows\)/,
      "too_many_rows",
    );
    await refused(
      "/v1/completions",
      { model: "tiny", prompt: "word".repeat(1_000_000), max_tokens: 0 },
      400,
      /prompt\[0\] needs 62500 positions: this model's max_position_embeddings is 512/,
      "context_length_exceeded",
    );
  });

  it("echoed log-probs over the answer cap: 413 naming maxEchoEntries", async () => {
    await refused(
      "/v1/completions",
      { model: "tiny", prompt: Array.from({ length: 256 }, () => ids(510)), max_tokens: 0, echo: true, logprobs: 20 },
      413,
      /2741760 entries .* at most 1048576 a request \(maxEchoEntries\)/,
      "answer_too_large",
    );
  });

  it("max_tokens above the cap: 400 naming maxTokens", async () => {
    await refused(
      "/v1/completions",
      { model: "tiny", prompt: [ids(5)], max_tokens: 300 },
      400,
      /max_tokens is 300: .* at most 256 tokens a completion \(maxTokens\)/,
      "max_tokens_too_large",
    );
  });

  it("hidden states for 64 x 512 over the byte cap: 413 before computing", async () => {
    const before = (await health(endpoint)).sessions.built;
    await refused(
      "/v1/hidden-states",
      { model: "tiny", input_ids: Array.from({ length: 64 }, () => ids(512)), layer: 2 },
      413,
      /8388608 bytes \(64 rows x 512 positions x 64 hidden x 4\).*at most 4194304 \(maxHiddenStateBytes\)/,
      "hidden_states_too_large",
    );
    // Only the valid request (layer 1) may have built a session: the refused one (layer 2) built none.
    expect((await health(endpoint)).sessions.built - before).toBeLessThanOrEqual(1);
  });

  it("20,000 perturbation terms over a tensor: 413 naming maxPerturbationWork, at its default", async () => {
    const embed = { type: "full", tensors: ["model.embed_tokens.weight"] };
    const terms = Array.from({ length: 20_000 }, (_, i) => [i, 1e-3]);
    await refused(
      "/v1/perturbed-scores",
      { ...scoring, trains: embed, terms },
      413,
      /needs 384019200 values \(\(20000 terms \+ w0\) x 19200 trained values\).*at most 67108864 a request \(maxPerturbationWork\)/,
      "perturbation_too_large",
    );
    const prompt = { tokens: 256, dimension: 10_000, seed: 1, z: Array(10_000).fill(0.1) };
    await refused(
      "/v1/prompt-scores",
      { ...scoring, prompt },
      413,
      /10000 z values x 256 prompt tokens x 64 hidden.*\(maxPerturbationWork\)/,
    );
  });
});

describe("sessions", () => {
  it("many distinct `trains` keep at most maxSessions cached, the least recently used released", async () => {
    // On v_proj: no other test's session.
    const score = async (r: number) =>
      expect((await post(endpoint, "/v1/perturbed-scores", { ...scoring, trains: lora(r, "v_proj"), terms: [[1, 0.01]] })).status).toBe(
        200,
      );
    const start = (await health(endpoint)).sessions;
    for (let r = 1; r <= 12; r++) {
      await score(r);
      expect((await health(endpoint)).sessions.cached).toBeLessThanOrEqual(2);
    }
    const after = (await health(endpoint)).sessions;
    expect(after.built - start.built).toBe(12);
    expect(after.released - start.released).toBeGreaterThanOrEqual(10);
    // Cached: r 11 and 12. Using 11 makes 12 the least recently used: 13 evicts it, and 11 is still there.
    await score(11);
    await score(13);
    await score(11);
    expect((await health(endpoint)).sessions.built - after.built).toBe(1);
    await score(12);
    expect((await health(endpoint)).sessions.built - after.built).toBe(2);
  });

  it("an evicted session in use is released when its last request ends, and a failed build is not kept", async () => {
    const released: string[] = [];
    const session = (name: string) => async () => ({ name, release: async () => void released.push(name) });
    const cache = new SessionCache<{ name: string; release(): Promise<void> }>(1);
    let finish!: () => void;
    const running = cache.use("a", session("a"), () => new Promise<void>((done) => (finish = done)));
    await cache.use("b", session("b"), async () => undefined);
    // "a" is evicted (capacity 1) but still running: not released yet.
    expect(cache.stats()).toMatchObject({ cached: 1, built: 2, released: 0 });
    await new Promise((tick) => setTimeout(tick, 0));
    expect(released).toEqual([]);
    finish();
    await running;
    await new Promise((tick) => setTimeout(tick, 0));
    expect(released).toEqual(["a"]);
    await expect(
      cache.use(
        "c",
        () => Promise.reject(new Error("no graph")),
        async () => undefined,
      ),
    ).rejects.toThrow("no graph");
    expect(cache.stats().cached).toBe(0);
    await cache.use("c", session("c"), async () => undefined);
    expect(cache.stats()).toMatchObject({ cached: 1, built: 4 });
  });
});

describe("concurrency and time", () => {
  let busy: RunningEndpoint;
  beforeAll(async () => {
    // One request computes, one may wait, 500 ms each. A single prompt waits 3 s in the batcher for a
    // batch of 8 to fill, so it outlasts the timeout; eight prompts fill a batch and go at once.
    busy = await startEndpoint({
      model,
      fingerprint: "fp",
      name: "tiny",
      port: 0,
      token: TOKEN,
      maxBatch: 8,
      maxWaitMs: 3000,
      limits: { maxConcurrent: 1, maxQueued: 1, timeoutMs: 500 },
    });
  });
  afterAll(async () => {
    await busy?.close();
  });
  const one = { model: "tiny", prompt: [ids(5)], max_tokens: 0, echo: true, logprobs: 0 };

  it("over the limit: 429 with retry-after; timed out in the queue: 503; computing: 504; then a valid request works", async () => {
    const slow = post(busy, "/v1/completions", one);
    await expect.poll(async () => (await health(busy)).computing).toBe(1);
    const queued = post(busy, "/v1/completions", one);
    await expect.poll(async () => (await health(busy)).queued).toBe(1);
    const over = await post(busy, "/v1/completions", one);
    expect(over.status).toBe(429);
    expect(over.headers.get("retry-after")).toBe("1");
    expect(((await over.json()) as ErrorBody).error).toMatchObject({
      code: "too_many_requests",
      type: "rate_limit_error",
      message: expect.stringMatching(/1 requests compute at once \(maxConcurrent\) and 1 more may wait \(maxQueued\)/),
    });
    const waited = await queued;
    expect(waited.status).toBe(503);
    expect(waited.headers.get("retry-after")).toBe("1");
    expect(((await waited.json()) as ErrorBody).error.message).toMatch(
      /waited 500 ms \(timeoutMs\) for one of the 1 computing slots \(maxConcurrent\)/,
    );
    const late = await slow;
    expect(late.status).toBe(504);
    expect(((await late.json()) as ErrorBody).error.message).toMatch(/did not finish within 500 ms \(timeoutMs\)/);
    // The timed-out request keeps its slot until its work ends; then the slot is free again.
    await expect.poll(async () => (await health(busy)).computing, { timeout: 10_000 }).toBe(0);
    const batch = await post(busy, "/v1/completions", { ...one, prompt: Array.from({ length: 8 }, (_, i) => ids(5, 3 + i)) });
    expect(batch.status).toBe(200);
    expect(await health(busy)).toMatchObject({ computing: 0, queued: 0 });
  });
});
