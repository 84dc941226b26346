import { parseArgs } from "node:util";
import { generateTokens } from "../../src/engine/generate.ts";
import { ENGINE_OPTIONS, openModel } from "../engine-options.ts";
import { number } from "../numbers.ts";
import { UsageError } from "../usage.ts";

export const generateUsage =
  `fedflare generate --model DIR [--adapter DIR] --prompt "..." [--max-tokens N] [--temperature T] ` +
  `[--top-p P] [--seed S] [--json]
  Greedy at temperature 0 (the default), else temperature and top-p sampling; uses a KV cache.`;

export async function generate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...ENGINE_OPTIONS,
      prompt: { type: "string" },
      "max-tokens": { type: "string", default: "32" },
      temperature: { type: "string", default: "0" },
      "top-p": { type: "string", default: "1" },
      seed: { type: "string", default: "0" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  const opts = {
    maxTokens: number("max-tokens", values["max-tokens"], 1, Infinity, true),
    temperature: number("temperature", values.temperature, 0),
    topP: number("top-p", values["top-p"], Number.MIN_VALUE, 1),
    seed: number("seed", values.seed, 0, 2 ** 32 - 1, true),
  };
  const { loaded, forward } = await openModel(values, { kind: "step" });
  const prompt = loaded.tokenizer.encode(values.prompt);
  if (prompt.length + opts.maxTokens > loaded.config.maxPositions) {
    await forward.release();
    throw new UsageError(
      `the prompt's ${prompt.length} tokens and --max-tokens ${opts.maxTokens} pass the model's ${loaded.config.maxPositions} positions: ` +
        `ask for at most ${Math.max(0, loaded.config.maxPositions - prompt.length)}`,
    );
  }
  const out = await generateTokens(forward, prompt, { ...opts, stopIds: loaded.config.eosTokenIds });
  await forward.release();
  const text = loaded.tokenizer.decode(out.tokens, { skipSpecialTokens: true });
  process.stdout.write(
    values.json ? `${JSON.stringify({ prompt_tokens: prompt, tokens: out.tokens, text, finish_reason: out.finishReason })}\n` : `${text}\n`,
  );
}
