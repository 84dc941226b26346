import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { packWindows } from "../../src/data/lm-windows.ts";
import { parseJsonl } from "../../src/data/jsonl.ts";
import { perplexity } from "../../src/engine/perplexity.ts";
import { sotuSplit } from "../corpora.ts";
import { ENGINE_OPTIONS, openModel } from "../engine-options.ts";
import { positiveInt } from "../numbers.ts";
import { UsageError } from "../usage.ts";

export const perplexityUsage =
  `fedflare perplexity --model DIR (--corpus sotu-heldout | --data FILE.jsonl) [--window 128] ` +
  `[--adapter DIR] [--quant f32|int8|int4]
  Perplexity over consecutive windows: each document is BOS + text + EOS, the stream is cut into
  windows of --window predicted tokens. sotu-heldout is the default model's held-out split.`;

export async function perplexityCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { ...ENGINE_OPTIONS, corpus: { type: "string" }, data: { type: "string" }, window: { type: "string", default: "128" } },
    strict: true,
  });
  if (!values.corpus === !values.data) throw new UsageError("give exactly one of --corpus sotu-heldout or --data FILE.jsonl");
  if (values.corpus && values.corpus !== "sotu-heldout") throw new UsageError(`--corpus must be sotu-heldout, got "${values.corpus}"`);
  const window = positiveInt("window", values.window);
  const { loaded, forward } = await openModel(values, { kind: "forward", nll: true });
  const { tokenizer, config } = loaded;
  const texts = values.data
    ? parseJsonl(readFileSync(values.data, "utf8"), values.data).map((r) => ("text" in r ? r.text : r.prompt + r.completion))
    : sotuSplit().heldOut.map((a) => a.text);
  const bos = config.bosTokenId ?? [];
  const eos = config.eosTokenIds.slice(0, 1);
  const windows = packWindows(
    texts.map((t) => [bos, tokenizer.encode(t, { addSpecialTokens: false }), eos].flat()),
    window,
  );
  if (windows.length === 0) throw new UsageError(`the text is shorter than one window of ${window + 1} tokens; lower --window`);
  const result = await perplexity(forward, windows, 8, (done) => process.stderr.write(`\rscored ${done}/${windows.length} windows`));
  process.stderr.write("\n");
  await forward.release();
  process.stdout.write(
    `${JSON.stringify({ windows: windows.length, tokens: result.tokens, mean_nll: result.meanNll, perplexity: result.perplexity })}\n`,
  );
}
