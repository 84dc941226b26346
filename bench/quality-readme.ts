// Writes the README's learning-quality tables from bench/results/quality.json (bench/quality.ts), between
// the markers `<!-- quality:start -->` and `<!-- quality:end -->`: every figure there comes from the file.
// Run: node bench/quality-readme.ts
import { readFileSync, writeFileSync } from "node:fs";
import { fmt } from "../src/report/table.ts";
import { gapTable, METHOD_ROWS, type QualitySummary, qualityTable, robustMatrix, tuningTable } from "./lib/quality-table.ts";
import { type RuleCounts, ruleCell, sumRuleCounts } from "./lib/robust-counts.ts";

interface Written {
  machine: { date: string };
  presets: Record<string, { tasks: { name: string; partitions: Record<string, unknown> }[]; rows: QualitySummary[] }>;
}

/** A row's rule counts summed over its seeds; null where no seed has them. */
function ruleOf(r: QualitySummary): RuleCounts | null {
  const counts = (r.seeds as { rule?: RuleCounts }[]).flatMap((s) => (s.rule ? [s.rule] : []));
  return counts.length ? sumRuleCounts(counts) : null;
}

/** Whether a row's rule names the clients it kept or clipped (Krum, the norm bound). */
function namesClients(r: QualitySummary): boolean {
  const counts = ruleOf(r);
  return counts !== null && (counts.kept !== undefined || counts.clipped !== undefined);
}

const START = "<!-- quality:start -->";
const END = "<!-- quality:end -->";
const results = JSON.parse(readFileSync(new URL("./results/quality.json", import.meta.url), "utf8")) as Written;

const sections: string[] = [];
for (const [preset, { tasks, rows }] of Object.entries(results.presets)) {
  // Tables in the preset's order of tasks and partitions, whatever order the rows ran in.
  const order = tasks.flatMap((t) => Object.keys(t.partitions).map((p) => `${t.name}/${p}`));
  const groups = [...new Set(rows.map((r) => `${r.task}/${r.partition}`))].sort((a, b) => order.indexOf(a) - order.indexOf(b));
  for (const group of groups) {
    const part = rows.filter((r) => `${r.task}/${r.partition}` === group);
    const accuracy = part[0]!.metric === "accuracy";
    const where = group.replace("/", ", ");
    // A preset's tuning rows (tune.*): settings tried on the validation split, chosen by its loss.
    const tuning = tuningTable(part);
    if (tuning)
      sections.push(
        `${preset} preset, ${where}: the learning rates tried${preset === "robust" ? " on the clean federation" : ""}, ` +
          "chosen by validation loss",
        "",
        "```",
        tuning,
        "```",
        "",
      );
    if (preset === "robust") {
      sections.push(
        `robust preset, ${where}: test ${accuracy ? "accuracy %" : "loss"} by attack (lines) and defence ` +
          "(columns), mean ± std over seeds; rows not run yet show -",
        "",
        ...robustMatrix(part).flatMap((t) => ["```", t, "```", ""]),
        // Where the clean federation barely leaves the majority class, accuracy cannot tell rows apart; the loss can.
        ...(accuracy
          ? [
              `robust preset, ${where}: test loss by attack and defence (the same runs)`,
              "",
              ...robustMatrix(part, (r) => (r.testLoss === undefined ? "-" : fmt(r.testLoss, 4))).flatMap((t) => ["```", t, "```", ""]),
            ]
          : []),
        ...(part.some(namesClients)
          ? [
              `robust preset, ${where}: where a rule let attackers through, over every round of every seed: the ` +
                "attackers' (A) and the honest clients' (H) updates Krum kept or the norm bound clipped, of those it saw",
              "",
              ...robustMatrix(part.filter(namesClients), (r) => ruleCell(ruleOf(r)!)).flatMap((t) => ["```", t, "```", ""]),
            ]
          : []),
      );
      continue;
    }
    sections.push(
      `${preset} preset, ${where}: test ${accuracy ? "accuracy %" : "loss"}, mean ± std over each row's seeds` +
        `${accuracy ? "; ± 95%: the mean Wilson half-width of one run's test accuracy" : ""}` +
        `${part.some((r) => r.generated) ? "; exact match of the greedy pronunciations, and PER: their phoneme error rate" : ""}`,
      "",
      "```",
      qualityTable(part.filter((r) => !r.row.startsWith("tune."))),
      "```",
      "",
    );
  }
  if (preset !== "quick" && preset !== "full") continue;
  for (const task of tasks.map((t) => t.name).filter((name) => rows.some((r) => r.task === name))) {
    const part = rows.filter((r) => r.task === task);
    if (!part.some((r) => (METHOD_ROWS as readonly string[]).includes(r.row))) continue;
    const accuracy = part[0]!.metric === "accuracy";
    sections.push(
      `${preset} preset, ${task}: each method's test ${accuracy ? "accuracy (points)" : "loss (nats; negative is better)"} ` +
        "minus each baseline's on the same partition, and minus its own on IID data; mean ± std over the method's seeds " +
        "(against a baseline's same seed where it ran it, else its mean)",
      "",
      "```",
      gapTable(part),
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
console.log(`wrote ${sections.filter((l) => l === "```").length / 2} tables into README.md from bench/results/quality.json`);
