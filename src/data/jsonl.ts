// Instruction or plain-text records from JSONL: one JSON object a line, {"text"} or {"prompt","completion"}.
import * as v from "valibot";
import { DataError } from "./errors.ts";

const TextRecord = v.strictObject({ text: v.pipe(v.string(), v.minLength(1)) });
const PairRecord = v.strictObject({ prompt: v.string(), completion: v.pipe(v.string(), v.minLength(1)) });
const Record_ = v.union([TextRecord, PairRecord], 'expected {"text": string} or {"prompt": string, "completion": string}');

export type TextExample = v.InferOutput<typeof TextRecord>;
export type PairExample = v.InferOutput<typeof PairRecord>;
export type Example = TextExample | PairExample;

/** Parses every non-blank line; the first bad line throws a DataError naming its number. */
export function parseJsonl(text: string, source = "input"): Example[] {
  const out: Example[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (e) {
      throw new DataError("jsonl_invalid", `${source}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    const r = v.safeParse(Record_, json);
    if (!r.success) throw new DataError("jsonl_invalid", `${source}:${i + 1}: ${r.issues[0].message}`);
    out.push(r.output);
  });
  if (out.length === 0) throw new DataError("dataset_empty", `${source}: no records`);
  return out;
}
