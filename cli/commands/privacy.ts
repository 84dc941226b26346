// `fedflare privacy`: the client-level (ε, δ) of a DP federation from its noise multiplier, sample rate
// and rounds (src/privacy/rdp.ts), or the smallest noise multiplier that keeps ε within a target.
import { parseArgs } from "node:util";
import { noiseForEpsilon, privacySpent } from "../../src/privacy/rdp.ts";
import { number, positiveInt, positiveNumber } from "../numbers.ts";
import { UsageError } from "../usage.ts";

export const privacyUsage = `fedflare privacy (--noise-multiplier Z | --target-epsilon E) --sample-rate Q --steps T [--delta D] [--json]
  The RDP accountant of the Poisson-subsampled Gaussian (src/privacy/rdp.ts; Opacus's series at fractional
  orders, dp_accounting's orders and conversion): Q is the expected
  share of the clients sampled a round, T the rounds, D defaults to 1e-5. Prints ε and the best order
  (--json: {"epsilon", "order", "orders", "rdp"}), or with --target-epsilon the smallest noise multiplier
  reaching E (--json: {"noise_multiplier"}).`;

export async function privacy(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      "noise-multiplier": { type: "string" },
      "target-epsilon": { type: "string" },
      "sample-rate": { type: "string" },
      steps: { type: "string" },
      delta: { type: "string", default: "1e-5" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const noise = values["noise-multiplier"];
  const target = values["target-epsilon"];
  if ((noise === undefined) === (target === undefined)) throw new UsageError("give one of --noise-multiplier and --target-epsilon");
  if (values["sample-rate"] === undefined || values.steps === undefined) throw new UsageError("--sample-rate and --steps are required");
  const sampleRate = number("sample-rate", values["sample-rate"], 0, 1);
  const steps = positiveInt("steps", values.steps, 0);
  const delta = number("delta", values.delta, 0, 1);
  // At δ 0 no ε is finite, at 1 every ε holds.
  if (delta === 0 || delta === 1) throw new UsageError(`--delta is in (0, 1), got "${values.delta}"`);
  if (target !== undefined) {
    const sigma = noiseForEpsilon({ sampleRate, steps, delta, targetEpsilon: positiveNumber("target-epsilon", target) });
    process.stdout.write(
      values.json
        ? `${JSON.stringify({ noise_multiplier: sigma })}\n`
        : `noise multiplier ${sigma.toPrecision(6)} reaches ε ≤ ${target} at δ = ${delta}\n`,
    );
    return;
  }
  const spent = privacySpent({ sampleRate, noiseMultiplier: number("noise-multiplier", noise!, 0), steps }, delta);
  process.stdout.write(
    values.json
      ? `${JSON.stringify({ epsilon: spent.epsilon, order: spent.order, orders: spent.orders, rdp: spent.rdp })}\n`
      : `ε = ${spent.epsilon.toPrecision(6)} at δ = ${delta} (best RDP order ${spent.order})\n`,
  );
}
