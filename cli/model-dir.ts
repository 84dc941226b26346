// A model or adapter folder on local disk as a ModelSource.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ModelSource } from "../src/engine/model-files.ts";

export function dirSource(dir: string): ModelSource {
  return {
    location: dir,
    async read(name) {
      try {
        return new Uint8Array(await readFile(join(dir, name)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw e;
      }
    },
  };
}
