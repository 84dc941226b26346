// The `fedflare` command.
import { FedflareError } from "../src/errors.ts";
import { clientSecret, clientSecretUsage } from "./commands/client-secret.ts";
import { endpoint, endpointUsage } from "./commands/endpoint.ts";
import { exportData, exportDataUsage } from "./commands/export-data.ts";
import { generate, generateUsage } from "./commands/generate.ts";
import { offsite, offsiteUsage } from "./commands/offsite.ts";
import { perplexityCommand, perplexityUsage } from "./commands/perplexity.ts";
import { phrases, phrasesUsage } from "./commands/phrases.ts";
import { plan, planUsage } from "./commands/plan.ts";
import { privacy, privacyUsage } from "./commands/privacy.ts";
import { quantize, quantizeUsage } from "./commands/quantize.ts";
import { run, runUsage } from "./commands/run.ts";
import { score, scoreUsage } from "./commands/score.ts";
import { train, trainUsage } from "./commands/train.ts";
import { UsageError } from "./usage.ts";

const COMMANDS: Record<string, { run: (args: string[]) => Promise<void>; usage: string }> = {
  run: { run, usage: runUsage },
  score: { run: score, usage: scoreUsage },
  generate: { run: generate, usage: generateUsage },
  train: { run: train, usage: trainUsage },
  perplexity: { run: perplexityCommand, usage: perplexityUsage },
  "export-data": { run: exportData, usage: exportDataUsage },
  "client-secret": { run: clientSecret, usage: clientSecretUsage },
  endpoint: { run: endpoint, usage: endpointUsage },
  offsite: { run: offsite, usage: offsiteUsage },
  phrases: { run: phrases, usage: phrasesUsage },
  quantize: { run: quantize, usage: quantizeUsage },
  plan: { run: plan, usage: planUsage },
  privacy: { run: privacy, usage: privacyUsage },
};

const usage = `usage: fedflare <command> [options]\n\n${Object.values(COMMANDS)
  .map((c) => c.usage)
  .join("\n\n")}\n`;

/** Node's errors for a path that cannot be used as given. */
const FILE_ERRORS = new Set(["ENOENT", "EISDIR", "ENOTDIR", "EACCES", "EEXIST", "ENOTEMPTY"]);

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`fedflare: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  try {
    await command.run(args);
    return 0;
  } catch (e) {
    // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown or malformed options.
    const parseError = (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    if (e instanceof UsageError || parseError) {
      process.stderr.write(`fedflare ${name}: ${(e as Error).message}\n\nusage: ${command.usage}\n`);
      return 2;
    }
    if (e instanceof FedflareError) {
      process.stderr.write(`fedflare ${name}: error [${e.code}]: ${e.message}\n`);
      return 1;
    }
    // A path the user gave that is missing, a folder, a file or not theirs: Node's message names it.
    const file = e as NodeJS.ErrnoException;
    if (FILE_ERRORS.has(file.code ?? "")) {
      process.stderr.write(`fedflare ${name}: ${file.message}${file.path && !file.message.includes(file.path) ? ` (${file.path})` : ""}\n`);
      return 1;
    }
    throw e;
  }
}
