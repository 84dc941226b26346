// `fedflare privacy` as a user runs it: ε of a DP federation, its JSON, and the noise multiplier for a target ε.
import { describe, expect, it } from "vitest";
import { DEFAULT_ORDERS, privacySpent } from "../../src/privacy/rdp.ts";
import { privacy } from "../../cli/commands/privacy.ts";
import { runCli } from "./run-cli.ts";

describe("fedflare privacy", () => {
  it("prints ε and its order, and the RDP curve as JSON, equal to the accountant's", async () => {
    const args = ["privacy", "--noise-multiplier", "1.1", "--sample-rate", "0.01", "--steps", "10000", "--delta", "1e-5"];
    const want = privacySpent({ sampleRate: 0.01, noiseMultiplier: 1.1, steps: 10_000 }, 1e-5);
    const text = await runCli(args);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe(`ε = ${want.epsilon.toPrecision(6)} at δ = 0.00001 (best RDP order ${want.order})\n`);
    // dp_accounting's integer orders alone give 5.6543 at order 5; the fractional orders find a smaller ε.
    expect(want.epsilon).toBeLessThan(5.6543);
    expect(want.epsilon).toBeGreaterThan(5.5);
    const json = JSON.parse((await runCli([...args, "--json"])).stdout) as {
      epsilon: number;
      order: number;
      orders: number[];
      rdp: number[];
    };
    expect(json).toEqual({ epsilon: want.epsilon, order: want.order, orders: [...DEFAULT_ORDERS], rdp: want.rdp });
  });

  it("finds the smallest noise multiplier for a target ε, which the accountant confirms", async () => {
    const r = await runCli(["privacy", "--target-epsilon", "4", "--sample-rate", "0.05", "--steps", "200", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const { noise_multiplier: sigma } = JSON.parse(r.stdout) as { noise_multiplier: number };
    const at = (s: number) => privacySpent({ sampleRate: 0.05, noiseMultiplier: s, steps: 200 }, 1e-5).epsilon;
    expect(at(sigma)).toBeLessThanOrEqual(4);
    expect(at(sigma * 0.999)).toBeGreaterThan(4);
  });

  it("refuses a missing or out-of-range option with its usage", async () => {
    const both = await runCli(["privacy", "--noise-multiplier", "1", "--target-epsilon", "2", "--sample-rate", "0.1", "--steps", "3"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/give one of --noise-multiplier and --target-epsilon/);
    const rate = await runCli(["privacy", "--noise-multiplier", "1", "--sample-rate", "1.5", "--steps", "3"]);
    expect(rate.code).toBe(2);
    expect(rate.stderr).toMatch(/--sample-rate must be a number in \[0, 1\], got "1.5"/);
    await expect(privacy(["--noise-multiplier", "1", "--sample-rate", "0.5", "--steps", "3", "--delta", "1"])).rejects.toThrow(
      '--delta is in (0, 1), got "1"',
    );
    // A noise multiplier whose square underflows once made the accountant's series run forever.
    await expect(privacy(["--noise-multiplier", "1e-200", "--sample-rate", "0.5", "--steps", "10"])).rejects.toThrow(
      "the noise multiplier is 0 or finite and ≥ 0.001, got 1e-200",
    );
  });
});
