// Writes the README's learning-quality tables from bench/results/quality.json (bench/quality.ts), between
// the markers `<!-- quality:start -->` and `<!-- quality:end -->`: every figure there comes from the file.
// Run: node bench/quality-readme.ts
import { readFileSync, writeFileSync } from "node:fs";
import { fmt, formatTable } from "../src/report/table.ts";

interface Summary {
  task: string;
  partition: string;
  label: string;
  metric: "accuracy" | "loss";
  mean: number;
  std: number;
  balancedMean: number | null;
  intervalHalfWidth: number | null;
  clientStd: number | null;
  roundsTo95: number | null;
}
interface Written {
  machine: { date: string };
  presets: Record<string, { seeds: number[]; rows: Summary[] }>;
}

const START = "<!-- quality:start -->";
const END = "<!-- quality:end -->";
const results = JSON.parse(readFileSync(new URL("./results/quality.json", import.meta.url), "utf8")) as Written;

const sections: string[] = [];
for (const [preset, { seeds, rows }] of Object.entries(results.presets)) {
  const groups = [...new Set(rows.map((r) => `${r.task}/${r.partition}`))];
  for (const group of groups) {
    const part = rows.filter((r) => `${r.task}/${r.partition}` === group);
    const accuracy = part[0]!.metric === "accuracy";
    const show = (x: number) => (accuracy ? fmt(100 * x, 1) : fmt(x, 4));
    sections.push(
      `${preset} preset, ${group.replace("/", ", ")}: test ${accuracy ? "accuracy %" : "loss"}, mean ± std over ${seeds.length} seeds` +
        `${accuracy ? "; ± 95%: the mean Wilson half-width of one run's test accuracy" : ""}`,
      "",
      "```",
      formatTable(
        ["row", accuracy ? "accuracy" : "loss", "± std", ...(accuracy ? ["± 95%", "balanced"] : []), "client std", "rounds to 95%"],
        part.map((r) => [
          r.label,
          show(r.mean),
          show(r.std),
          ...(accuracy
            ? [r.intervalHalfWidth === null ? "-" : show(r.intervalHalfWidth), r.balancedMean === null ? "-" : show(r.balancedMean)]
            : []),
          r.clientStd === null ? "-" : show(r.clientStd),
          r.roundsTo95 === null ? "-" : String(r.roundsTo95),
        ]),
      ),
      "```",
      "",
    );
  }
}

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const [before, rest] = readme.split(START);
if (rest === undefined || !rest.includes(END)) throw new Error(`README.md has no ${START} ... ${END} section`);
const after = rest.slice(rest.indexOf(END));
writeFileSync(new URL("../README.md", import.meta.url), `${before}${START}\n${sections.join("\n")}${after}`);
console.log(`wrote ${sections.length ? groupsCount() : 0} tables into README.md from bench/results/quality.json`);

function groupsCount(): number {
  return Object.values(results.presets).reduce((n, p) => n + new Set(p.rows.map((r) => `${r.task}/${r.partition}`)).size, 0);
}
