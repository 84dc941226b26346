// Label words for the spam task, chosen on training records only (issue 17): after each training mail's
// prompt (cut as the scorers cut it, src/data/examples.ts completionExample), the base model's next-token
// log-probabilities of every single-token word; each word's ROC AUC for telling spam from ham; among the
// TOP most spam-leaning and TOP most ham-leaning words, the pair whose score difference has the highest
// training AUC. The validation split reports the chosen pair, the pair the benches use and the label
// names themselves (" spam" against " ham", scored as their whole token sequences); the test split is
// not read. bench/lib/quality-rows.ts reads the chosen pair from bench/results/label-words.json.
// Run: node bench/label-words.ts [--model models/fedflare-mail-4m]
import { benchArgs } from "./lib/args.ts";
import { dirSource } from "../cli/model-dir.ts";
import { spamSplits } from "../cli/task-splits.ts";
import { completionExample } from "../src/data/examples.ts";
import { rocAuc } from "../src/data/metrics.ts";
import { spamExample } from "../src/data/tasks/spam.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { loadModel } from "../src/engine/model-files.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { scorePrompts } from "../src/engine/score.ts";
import { labelScores, wordIds } from "../src/engine/train/evaluate.ts";
import { fmt, printTable } from "../src/report/table.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({ options: { model: { type: "string", default: "models/fedflare-mail-4m" } } });
/** The window the quality rows score in (bench/lib/quality-rows.ts: maxTokens 96). */
const MAX_TOKENS = 96;
/** Words kept from each end of the single-word ranking for the pair search. */
const TOP = 25;
const BATCH = 8;
const log = (s: string) => process.stderr.write(`${s}\n`);

const model = await loadModel(dirSource(values.model));
const tok = model.tokenizer;
const splits = spamSplits();
const prompts = (mails: typeof splits.train) =>
  mails.map((m) => {
    const ids = completionExample(tok.encode(spamExample(m, 500).prompt), [0], MAX_TOKENS).ids;
    return { ids: ids.slice(0, -1), spam: m.group.startsWith("spam") };
  });
const [train, validation] = [prompts(splits.train), prompts(splits.validation)];

// Single-token words: " " + letters, as a label word follows "Answer:".
const words = new Map<number, string>();
for (let id = 0; id < model.config.vocabSize; id++) {
  const s = tok.decode([id]);
  if (/^ [a-z]{3,}$/.test(s)) words.set(id, s.slice(1));
}
log(`${words.size} single-token words; scoring ${train.length} training and ${validation.length} validation prompts`);

const scorer = await ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, { kind: "forward", logprobs: true });
/** Per prompt, the next-token log-probability of each candidate word, in `words`' order. */
async function nextWordLogprobs(rows: readonly { ids: readonly number[] }[]): Promise<Float32Array[]> {
  const ids = [...words.keys()];
  const out: Float32Array[] = [];
  for (let i = 0; i < rows.length; i += BATCH) {
    const scored = await scorePrompts(
      scorer,
      rows.slice(i, i + BATCH).map((r) => ({ ids: r.ids, topK: 0 })),
    );
    for (const s of scored) out.push(Float32Array.from(ids, (id) => s.last[id]!));
  }
  return out;
}
const trainLp = await nextWordLogprobs(train);
const validationLp = await nextWordLogprobs(validation);
await scorer.release();

const names = [...words.values()];
const spamOf = (rows: typeof train) => rows.map((r) => r.spam);
const single = names.map((w, j) => ({
  word: w,
  auc: rocAuc(
    trainLp.map((lp) => lp[j]!),
    spamOf(train),
  ),
}));
const ranked = [...single].sort((a, b) => b.auc - a.auc);
const spamLeaning = ranked.slice(0, TOP);
const hamLeaning = ranked.slice(-TOP).reverse();
const pairAuc = (lps: Float32Array[], rows: typeof train, a: string, b: string) => {
  const [i, j] = [names.indexOf(a), names.indexOf(b)];
  if (i < 0 || j < 0) return null;
  return rocAuc(
    lps.map((lp) => lp[i]! - lp[j]!),
    spamOf(rows),
  );
};
const pairs = spamLeaning.flatMap((s) =>
  hamLeaning.map((h) => ({ spam: s.word, ham: h.word, train: pairAuc(trainLp, train, s.word, h.word)! })),
);
const best = pairs.reduce((a, b) => (b.train > a.train ? b : a));

// The label names as whole token sequences (" ham" may be more than one token).
const forward = await ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, { kind: "forward", nll: true });
const namesAuc = async (rows: typeof train) => {
  const scores = await labelScores(
    forward,
    rows.map((r) => r.ids),
    wordIds(tok, ["spam", "ham"]),
    { maxTokens: MAX_TOKENS },
  );
  return rocAuc(
    scores.map((s) => s[0]! - s[1]!),
    spamOf(rows),
  );
};
const labelNames = { train: await namesAuc(train), validation: await namesAuc(validation) };
await forward.release();

/** The pair bench/blackbox.ts scores, chosen before this script by hand. */
const used = { spam: "offer", ham: "work" };
const report = [
  { pair: `chosen: ${best.spam} / ${best.ham}`, train: best.train, validation: pairAuc(validationLp, validation, best.spam, best.ham) },
  {
    pair: `bench/blackbox's: ${used.spam} / ${used.ham}`,
    train: pairAuc(trainLp, train, used.spam, used.ham),
    validation: pairAuc(validationLp, validation, used.spam, used.ham),
  },
  { pair: "label names: spam / ham", train: labelNames.train, validation: labelNames.validation },
];
console.log(`\nROC AUC of the score difference for spam against ham, ${values.model}, prompts cut to ${MAX_TOKENS} tokens`);
printTable(
  ["pair", `train (${train.length})`, `validation (${validation.length})`],
  report.map((r) => [r.pair, r.train === null ? "-" : fmt(r.train, 3), r.validation === null ? "-" : fmt(r.validation, 3)]),
);
console.log("\nthe single words that lean most to each class (training AUC)");
printTable(
  ["spam-leaning", "AUC", "ham-leaning", "AUC"],
  spamLeaning.slice(0, 10).map((s, i) => [s.word, fmt(s.auc, 3), hamLeaning[i]!.word, fmt(hamLeaning[i]!.auc, 3)]),
);
console.log(
  `\nwrote ${await writeResults("label-words", {
    model: values.model,
    maxTokens: MAX_TOKENS,
    candidates: words.size,
    chosen: { spam: best.spam, ham: best.ham },
    pairs: report,
    spamLeaning,
    hamLeaning,
  })}`,
);
