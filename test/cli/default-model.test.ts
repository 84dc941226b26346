import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { spamAssassinSplit } from "../../cli/corpora.ts";
import { splitEvery } from "../../src/data/split.ts";
import { mailText } from "../../src/data/tasks/spam.ts";
import { tempDir } from "../fixtures/hf-model.ts";
import { runCli } from "./run-cli.ts";

const MODEL = "models/fedflare-sotu-4m";

describe.each([
  ["models/fedflare-sotu-4m", 4],
  ["models/fedflare-sotu-12l", 12],
] as const)("the shipped model %s", (dir, layers) => {
  it("has the layers its name says and scores text as a trained model does: far below the uniform 8.3 nats a token", async () => {
    const r = await runCli([
      "score",
      "--model",
      dir,
      "--text",
      "The state of the Union is strong, and the Congress must act on the budget.",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { mean_nll: number }).mean_nll).toBeLessThan(4.5);
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { num_hidden_layers: number };
    expect(config.num_hidden_layers).toBe(layers);
  });
});

describe.each(["models/fedflare-sotu-4m", "models/fedflare-sotu-12l", "models/fedflare-mail-4m"])("the shipped model %s", (dir) => {
  it("has the held-out perplexity its card states, within 2%, by the command the card gives", async () => {
    const card = readFileSync(join(dir, "README.md"), "utf8");
    const stated = Number(/Held-out perplexity: \*\*([\d.]+)\*\*/.exec(card)?.[1]);
    expect(stated).toBeGreaterThan(1);
    expect(card).toContain(`npx fedflare perplexity --model ${dir} --corpus sotu-heldout`);
    const r = await runCli(["perplexity", "--model", dir, "--corpus", "sotu-heldout"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { perplexity: number; tokens: number };
    expect(out.tokens).toBeGreaterThan(200_000);
    expect(Math.abs(out.perplexity / stated - 1)).toBeLessThan(0.02);
    // Over 200,000 tokens: 23-44 s on 2 cores beside the other test files.
  }, 180_000);
});

describe("the shipped mail model", () => {
  it("predicts held-out mails far better than the default model, which never saw a mail", async () => {
    const file = join(tempDir("mail-model"), "mails.jsonl");
    const held = splitEvery(spamAssassinSplit().pretraining, 10).heldOut;
    writeFileSync(
      file,
      held
        .slice(0, 40)
        .map((m) => JSON.stringify({ text: mailText(m, 3000) }))
        .join("\n"),
    );
    const perplexity = async (model: string) => {
      const r = await runCli(["perplexity", "--model", model, "--data", file]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { perplexity: number }).perplexity;
    };
    const [mail, sotu] = [await perplexity("models/fedflare-mail-4m"), await perplexity(MODEL)];
    expect(mail).toBeLessThan(sotu / 2);
  });
});
