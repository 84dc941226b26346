// `fedflare run`: a whole federation on this machine. Starts the coordinator, the aggregator Durable
// Object and one client worker per partition in workerd (Miniflare) — and, where the method asks, the
// inference endpoint (split LoRA's trunk, discrete prompts' completions API) — drives the rounds over
// HTTP, scores each global version on held-out data, and writes runs/<id>/: config.json, metrics.jsonl,
// plot.svg and the final adapter folder (cli/run/). --resume continues an interrupted run from its
// persisted storage.
import { parseArgs } from "node:util";
import { driveRun } from "../run/driver.ts";
import { progressFor } from "../run/progress.ts";
import { newRunDir, readRunConfig, resumedConfig, RunFolder } from "../run/run-folder.ts";
import { UsageError } from "../usage.ts";

export const runUsage = `fedflare run [--config FILE] [--out DIR] | fedflare run --resume DIR   [--quiet | --json]
  Runs a local federation (coordinator, aggregator Durable Object and client workers in workerd) and
  writes DIR (default runs/<id>/): config.json, metrics.jsonl, plot.svg and adapter/ (a PEFT folder, or
  for offsite-tuning the adapter layers). Split LoRA (method.fromLayer > 0) starts an inference endpoint
  for the trunk unless "trunk": "local". Without --config, the built-in default run (the default model,
  g2p over 4 clients, LoRA above layer 1 with the trunk at the endpoint). In a terminal each round shows as
  a block redrawn in place (a bar per client, time left); elsewhere a line per change; --json prints each
  change as a JSON line (the workers' own log lines may come between), --quiet only warnings.`;

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      out: { type: "string" },
      resume: { type: "string" },
      quiet: { type: "boolean" },
      json: { type: "boolean" },
    },
    strict: true,
  });
  if (values.resume && (values.config || values.out))
    throw new UsageError("--resume DIR takes the run's own config; do not combine it with --config or --out");
  const dir = values.resume ?? values.out ?? newRunDir();
  const config = values.resume ? resumedConfig(values.resume) : readRunConfig(values.config);
  if (values.quiet && values.json) throw new UsageError("--quiet and --json are two ways to show progress: give one");
  await driveRun(RunFolder.open(dir, config), progressFor(values.json ? "json" : values.quiet ? "quiet" : "auto", process.stderr));
}
