// POST /v1/completions as OpenAI (and vLLM, for echoed prompt log-probs) answer it: per prompt, the
// echoed prompt's log-probs from one batched forward, then generation with the KV cache.
import type { Batcher } from "../../src/engine/batcher.ts";
import type { EndpointEngine } from "../../src/engine/endpoint.ts";
import type { ForwardModel, ScoredPositions } from "../../src/engine/forward.ts";
import { generateTokens, type GenerateResult, type StepLogprobs } from "../../src/engine/generate.ts";
import { logSoftmax, sampleToken, seededUniform } from "../../src/engine/sampling.ts";
import type { PromptToScore } from "../../src/engine/score.ts";
import type { CompletionRequest } from "./schemas.ts";
import type { SessionCache } from "./session-cache.ts";

/** The endpoint's engine: what it lends extensions (EndpointEngine), and its own batching, generator and counts. */
export interface Engine extends EndpointEngine {
  fingerprint: string;
  /** Batched scoring of prompts across requests: each prompt's log-probs, top alternatives and last logits. */
  forward: Batcher<PromptToScore, ScoredPositions>;
  /** A KV-cache graph for generation (one request at a time). */
  generator: ForwardModel;
  /** Serialises generation on the single generator session. */
  lock: { tail: Promise<unknown> };
  /** Hidden-state rows served, for /health (app.ts counts the extensions' rows). */
  served: { hiddenStateRows: number };
  /** Graphs built per request shape: hidden states per cut layer, and the extensions' graphs. */
  sessions: SessionCache<ForwardModel>;
}

interface Logprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** `all` is the request's prompts as token ids (promptIds); generation stops between prompts once `signal` aborts. */
export async function complete(engine: Engine, req: CompletionRequest, all: readonly number[][], seed: number, signal: AbortSignal) {
  const { tokenizer, config } = engine.model;
  const V = config.vocabSize;
  const piece = (id: number) => tokenizer.decode([id]);
  const top = (pairs: [number, number][]) => Object.fromEntries(pairs.map(([id, lp]) => [piece(id), lp]));
  const k = req.logprobs ?? null;
  const stops = req.stop == null ? [] : typeof req.stop === "string" ? [req.stop] : req.stop;
  const choices = [];
  let promptTokens = 0;
  let completionTokens = 0;
  const texts = typeof req.prompt === "string" ? [req.prompt] : (req.prompt as unknown[]).map((x) => (typeof x === "string" ? x : null));
  for (const ids of all) for (const id of ids) if (id >= V) throw new RangeError(`token id ${id} is outside the vocabulary (${V})`);
  const maxTokens = req.max_tokens ?? 16;
  const sampling = { temperature: req.temperature ?? 1, topP: req.top_p ?? 1 };
  // One forward pass per prompt, all submitted at once so the batcher joins them (with other requests'):
  // the echoed log-probs, and for max_tokens = 1 (how scoring clients ask, vLLM wanting at least one token)
  // the token too. The graph computes the log-probs and top-k (ForwardGraph.logprobs), so what comes back
  // per prompt is O(T k) values and one row of logits, not T rows.
  const echoed = req.echo && k !== null;
  const needsScores = echoed || maxTokens === 1;
  const reduce = (ids: readonly number[], index: number) => (s: ScoredPositions) => {
    const alternatives = (t: number, n: number) =>
      Array.from({ length: n }, (_, j): [number, number] => [Number(s.topIds[t * s.k + j]), s.top[t * s.k + j]!]);
    // The first prompt token has no prediction (vLLM's null); position t scores token t + 1.
    const echo = echoed ? ids.slice(1).map((id, t) => ({ id, lp: s.target[t]!, top: alternatives(t, k!) })) : null;
    let first: { next: number; logprob: number; top: [number, number][] } | null = null;
    if (maxTokens === 1) {
      // The one token from the prompt's last position, drawn as generateTokens draws its first.
      const next = sampleToken(s.last, sampling, seededUniform(seed + index));
      first = { next, logprob: logSoftmax(s.last)[next]!, top: alternatives(ids.length - 1, k ?? 0) };
    }
    return { echo, first };
  };
  const scored = await Promise.all(
    all.map((ids, index) => (needsScores ? engine.forward.submit({ ids, topK: k ?? 0 }).then(reduce(ids, index)) : null)),
  );
  for (const [index, ids] of all.entries()) {
    promptTokens += ids.length;
    const prompt = scored[index] ?? null;
    const logprobs: Logprobs | null = k === null ? null : { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    let text = "";
    let offset = 0;
    const add = (id: number, lp: number | null, alternatives: Record<string, number> | null) => {
      const s = piece(id);
      if (logprobs) {
        logprobs.tokens.push(s);
        logprobs.token_logprobs.push(lp);
        logprobs.top_logprobs.push(alternatives);
        logprobs.text_offset.push(offset);
      }
      offset += s.length;
    };
    if (req.echo) {
      // The prompt as the caller gave it; token-id prompts are decoded.
      text = texts[index] ?? tokenizer.decode(ids);
      if (logprobs) {
        add(ids[0]!, null, null);
        for (const { id, lp, top: alternatives } of prompt!.echo!) add(id, lp, top(alternatives));
      }
    }
    let finish: "stop" | "length" = "length";
    if (maxTokens > 0) {
      let out: GenerateResult;
      if (prompt?.first) {
        const { next, logprob, top: alternatives } = prompt.first;
        out = {
          tokens: [next],
          logprobs: [{ logprob, top: alternatives }],
          finishReason: config.eosTokenIds.includes(next) ? "stop" : "length",
        };
      } else {
        // A request past its timeout (already answered) gives up its turn on the generator.
        const run = () => {
          signal.throwIfAborted();
          return generateTokens(engine.generator, ids, {
            maxTokens,
            ...sampling,
            seed: seed + index,
            stopIds: config.eosTokenIds,
            topLogprobs: k ?? 0,
          });
        };
        const job = engine.lock.tail.then(run, run);
        engine.lock.tail = job.catch(() => undefined);
        out = await job;
      }
      let generated = tokenizer.decode(out.tokens);
      finish = out.finishReason;
      let kept = out.tokens.length;
      // A stop sequence ends the text before it, as OpenAI does.
      for (const s of stops) {
        const at = generated.indexOf(s);
        if (at >= 0) {
          generated = generated.slice(0, at);
          finish = "stop";
          kept = out.tokens.findIndex((_, i) => tokenizer.decode(out.tokens.slice(0, i + 1)).length >= at + s.length);
        }
      }
      completionTokens += out.tokens.length;
      out.tokens.slice(0, Math.max(0, kept)).forEach((id, i) => {
        const step: StepLogprobs = out.logprobs![i]!;
        add(id, step.logprob, k === null ? null : top(step.top));
      });
      text += generated;
    }
    choices.push({ index, text, logprobs, finish_reason: finish });
  }
  return {
    id: `cmpl-${crypto.randomUUID()}`,
    object: "text_completion",
    created: Math.floor(Date.now() / 1000),
    model: engine.name,
    choices,
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };
}
