// Lists every line of the tracked sources over 140 characters and exits 1 if there is one. Biome formats at that
// width (biome.json) but cannot break string literals, template literals or comments; this catches what it leaves.
// Run by `npm run lint`: node scripts/check-line-length.ts
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

const MAX_CHARACTERS = 140;
// Generated or data files, which biome.json leaves out too.
const SKIPPED = ["models/", "bench/results/", "package-lock.json"];

const files = execFileSync("git", ["ls-files", "-z", "--", "*.ts", "*.js", "*.mjs"], { encoding: "utf8" })
  .split("\0")
  // A tracked file deleted in the working tree has nothing to check.
  .filter((path) => path !== "" && !SKIPPED.some((skipped) => path.startsWith(skipped)) && existsSync(path));

let long = 0;
for (const path of files) {
  readFileSync(path, "utf8")
    .split(/\r?\n/)
    .forEach((line, i) => {
      // Code points, not UTF-16 units: "é" and "😀" are one character each.
      const characters = [...line].length;
      if (characters > MAX_CHARACTERS) {
        console.log(`${path}:${i + 1}: ${characters} characters`);
        long++;
      }
    });
}
if (long > 0) {
  console.log(`${long} line${long === 1 ? "" : "s"} over ${MAX_CHARACTERS} characters`);
  process.exit(1);
}
