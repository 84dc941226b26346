// A model or adapter folder on local disk as a ModelSource.
import { existsSync, readFileSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ModelSource } from "../src/engine/model-files.ts";
import { UsageError } from "./usage.ts";

const missing = (e: unknown): null => {
  if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
  throw e;
};

export function dirSource(dir: string): ModelSource {
  return {
    location: dir,
    async read(name) {
      try {
        return new Uint8Array(await readFile(join(dir, name)));
      } catch (e) {
        return missing(e);
      }
    },
    async readRange(name, offset, length) {
      let file: Awaited<ReturnType<typeof open>>;
      try {
        file = await open(join(dir, name), "r");
      } catch (e) {
        return missing(e);
      }
      try {
        const size = (await file.stat()).size;
        const bytes = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
        const { bytesRead } = await file.read(bytes, 0, bytes.length, offset);
        return { bytes: bytes.subarray(0, bytesRead), size };
      } finally {
        await file.close();
      }
    },
  };
}

export function readJsonFile(dir: string, name: string): unknown {
  try {
    return JSON.parse(readFileSync(join(dir, name), "utf8"));
  } catch (e) {
    throw new UsageError(`${join(dir, name)}: ${(e as Error).message}`);
  }
}

/** A model folder's tokenizer.json and, when it has one, tokenizer_config.json, to copy along. */
export function tokenizerFiles(dir: string): { json: unknown; config?: Record<string, unknown> } {
  const json = readJsonFile(dir, "tokenizer.json");
  return existsSync(join(dir, "tokenizer_config.json"))
    ? { json, config: readJsonFile(dir, "tokenizer_config.json") as Record<string, unknown> }
    : { json };
}
