import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { shuffled } from "../../src/data/lm-windows.ts";
import { g2pExample, isPlainWord } from "../../src/data/tasks/g2p.ts";
import type { Example } from "../../src/data/jsonl.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { cmudict, sotuAddresses } from "../corpora.ts";
import { positiveInt } from "../numbers.ts";
import { UsageError } from "../usage.ts";

export const exportDataUsage = `fedflare export-data --dataset cmudict|sotu --out FILE.jsonl [--records N] [--seed S]
  Writes records from a corpus shipped by npm as JSONL for fedflare train: cmudict as grapheme-to-phoneme
  {"prompt","completion"} pairs (a seeded sample of plain words), sotu as one {"text"} per address.`;

export async function exportData(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      dataset: { type: "string" },
      out: { type: "string" },
      records: { type: "string", default: "2000" },
      seed: { type: "string", default: "0" },
    },
    strict: true,
  });
  if (!values.out) throw new UsageError("--out FILE.jsonl is required");
  const records = positiveInt("records", values.records);
  const uniform = seededUniform(positiveInt("seed", values.seed, 0));
  let rows: Example[];
  if (values.dataset === "cmudict") {
    const dict = cmudict();
    const words = Object.keys(dict)
      .filter((w) => isPlainWord(w))
      .sort();
    rows = shuffled(words, uniform)
      .slice(0, records)
      .map((w) => g2pExample(w, dict[w]!));
  } else if (values.dataset === "sotu")
    rows = sotuAddresses()
      .slice(0, records)
      .map((a) => ({ text: a.text }));
  else throw new UsageError(`--dataset must be cmudict or sotu, got "${values.dataset ?? ""}"`);
  writeFileSync(values.out, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
  process.stderr.write(`wrote ${rows.length} records to ${values.out}\n`);
}
