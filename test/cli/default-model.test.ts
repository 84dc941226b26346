import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sotuSplit, spamAssassinSplit } from "../../cli/corpora.ts";
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

describe("the shipped default model", () => {
  it("reaches the card's held-out perplexity range on held-out addresses (int8)", async () => {
    const file = join(tempDir("default-model"), "held.jsonl");
    writeFileSync(
      file,
      sotuSplit()
        .heldOut.slice(-2)
        .map((a) => JSON.stringify({ text: a.text }))
        .join("\n"),
    );
    const r = await runCli(["perplexity", "--model", MODEL, "--data", file, "--quant", "int8"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { perplexity: number; tokens: number };
    expect(out.tokens).toBeGreaterThan(5000);
    expect(out.perplexity).toBeGreaterThan(20);
    expect(out.perplexity).toBeLessThan(120);
  });
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
