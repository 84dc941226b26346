// Label scoring through any OpenAI-compatible POST /v1/completions: each row (prompt + a label's words,
// as token ids) is echoed with its log-probabilities, and the row's NLL is the sum over its trained
// (label) tokens. Rows go as token-id prompts, many in one request. vLLM needs max_tokens >= 1 (vllm#9336), so
// one token is generated and ignored; it must be serving the same tokenizer the client encodes with.
import OpenAI from "openai";
import type { TokenizedExample } from "../../../data/examples.ts";
import { FlError } from "../../errors.ts";

export interface CompletionsApi {
  /** The API's base URL, e.g. http://host:8000/v1. */
  baseURL: string;
  apiKey?: string;
  model: string;
  /** Rows per request (a server's batch); more rows make more requests. */
  maxRowsPerRequest?: number;
}

/** What a client spent at the API: requests, rows scored (the query budget's unit) and prompt tokens. */
export interface ApiUsage {
  requests: number;
  rows: number;
  promptTokens: number;
}

export const noUsage = (): ApiUsage => ({ requests: 0, rows: 0, promptTokens: 0 });

/** Scores rows: for each, the summed NLL of its trained tokens (as exampleNlls gives it); what it spent is added to `usage`. */
export type RowScorer = (rows: readonly TokenizedExample[], usage: ApiUsage) => Promise<number[]>;

/** Adds one request of `rows` to `usage`. */
export function charge(usage: ApiUsage, rows: readonly { ids: readonly number[] }[]): void {
  usage.requests += 1;
  usage.rows += rows.length;
  usage.promptTokens += rows.reduce((s, r) => s + r.ids.length, 0);
}

export function completionsRowScorer(api: CompletionsApi): RowScorer {
  // The key is required by the client library; a server started without one accepts any.
  const client = new OpenAI({ baseURL: api.baseURL, apiKey: api.apiKey ?? "none", maxRetries: 2 });
  const perRequest = api.maxRowsPerRequest ?? 64;
  return async (rows, usage) => {
    const out: number[] = [];
    for (let at = 0; at < rows.length; at += perRequest) {
      const chunk = rows.slice(at, at + perRequest);
      let answer: OpenAI.Completion;
      try {
        answer = await client.completions.create({
          model: api.model,
          prompt: chunk.map((r) => [...r.ids]),
          max_tokens: 1,
          temperature: 0,
          echo: true,
          logprobs: 1,
        });
      } catch (e) {
        throw new FlError("api_failed", `the completions API at ${api.baseURL} refused a scoring request: ${(e as Error).message}`);
      }
      charge(usage, chunk);
      const byIndex = new Map(answer.choices.map((c) => [c.index, c]));
      chunk.forEach((row, i) => {
        const lps = byIndex.get(i)?.logprobs?.token_logprobs;
        if (!lps || lps.length < row.ids.length)
          throw new FlError(
            "api_failed",
            `the completions API answered row ${at + i} without the echoed prompt's log-probs (${lps?.length ?? 0} of ` +
              `${row.ids.length}): the server must support echo with logprobs`,
          );
        let nll = 0;
        row.trained.forEach((trained, t) => {
          if (!trained) return;
          const lp = lps[t];
          if (typeof lp !== "number" || !Number.isFinite(lp))
            throw new FlError("api_failed", `the completions API gave no finite log-prob for token ${t} of row ${at + i}`);
          nll -= lp;
        });
        out.push(nll);
      });
    }
    return out;
  };
}
