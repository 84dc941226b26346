import { parseArgs } from "node:util";
import { deriveClientSecret } from "../../src/protocol/signature.ts";
import { UsageError } from "../usage.ts";

export const clientSecretUsage = `fedflare client-secret --client ID   (reads the master key from FEDFLARE_MASTER_KEY)
  Prints the signing secret of a client, derived from the coordinator's master key: give it to that
  data owner for \`wrangler secret put CLIENT_SECRET\`.`;

export async function clientSecret(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { client: { type: "string" } }, strict: true });
  if (!values.client) throw new UsageError("--client ID is required");
  const master = process.env.FEDFLARE_MASTER_KEY;
  if (!master)
    throw new UsageError(
      "set FEDFLARE_MASTER_KEY to the coordinator's master key (the value given to `wrangler secret put FEDFLARE_MASTER_KEY`)",
    );
  process.stdout.write(`${await deriveClientSecret(master, values.client)}\n`);
}
