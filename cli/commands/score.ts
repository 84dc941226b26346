import { parseArgs } from "node:util";
import { scoreText } from "../../src/engine/score.ts";
import { ENGINE_OPTIONS, openModel } from "../engine-options.ts";
import { UsageError } from "../usage.ts";

export const scoreUsage =
  `fedflare score --model DIR [--adapter DIR] --text "..." [--runtime ort-node|ort-web] [--quant f32|int8|int4] ` +
  `[--threads N]
  Prints {"tokens": [...], "logprobs": [...], "mean_nll": x}: logprobs[i] = log p(tokens[i+1] | tokens[0..i]).`;

export async function score(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { ...ENGINE_OPTIONS, text: { type: "string" } }, strict: true });
  if (values.text === undefined) throw new UsageError("--text is required");
  const { loaded, forward } = await openModel(values, { kind: "forward", nll: true });
  const result = await scoreText(forward, loaded.tokenizer, values.text);
  await forward.release();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
