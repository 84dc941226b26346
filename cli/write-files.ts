import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Writes name -> content into `dir`, creating it. */
export function writeFiles(dir: string, files: Iterable<readonly [string, string | Uint8Array]>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of files) writeFileSync(join(dir, name), content);
  return dir;
}
