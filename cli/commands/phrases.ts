// `fedflare phrases`: candidate phrases for a discrete-prompt federation, mined by PMI from one
// participant's labelled data on its own machine (the phrases, not the data, go into the config).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseJsonl } from "../../src/data/jsonl.ts";
import { labeledPrompts } from "../../src/engine/train/evaluate.ts";
import { pmiPhrases } from "../../src/fl/methods/discrete/policy-gradient.ts";
import { positiveInt } from "../numbers.ts";
import { UsageError } from "../usage.ts";

export const phrasesUsage = `fedflare phrases --data FILE.jsonl [--count 24] [--min-count 3]
  Prints, as a JSON array for a discrete-prompt method's "phrases", the words of FILE's {"prompt",
  "completion"} records with the highest pointwise mutual information with a label (the completion),
  among words seen in at least --min-count records.`;

export async function phrases(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { data: { type: "string" }, count: { type: "string", default: "24" }, "min-count": { type: "string", default: "3" } },
    strict: true,
  });
  if (!values.data) throw new UsageError("--data FILE.jsonl is required");
  const items = labeledPrompts(parseJsonl(readFileSync(values.data, "utf8"), values.data));
  if (new Set(items.map((x) => x.label)).size < 2)
    throw new UsageError(`${values.data} needs {"prompt", "completion"} records with at least two distinct completions (the labels)`);
  const mined = pmiPhrases(items, positiveInt("count", values.count), positiveInt("min-count", values["min-count"]));
  process.stdout.write(`${JSON.stringify(mined)}\n`);
}
