// Perplexity of a model with its frozen linears in float32, int8 (per output channel) and int4 (blocks
// of 32), on the same text in one run; plus how far the quantized next-token distributions move from
// the float ones (mean KL, top-1 agreement) and the graph size.
// Run: node bench/quantization.ts [--model DIR] [--windows N] [--window N]
// The text: the default model's held-out SOTU addresses (as `fedflare perplexity --corpus sotu-heldout`).
import { benchArgs } from "./lib/args.ts";
import { sotuSplit } from "../cli/corpora.ts";
import { dirSource } from "../cli/model-dir.ts";
import { packWindows } from "../src/data/lm-windows.ts";
import { ForwardModel } from "../src/engine/forward.ts";
import { buildLlamaGraph } from "../src/engine/llama/graph.ts";
import { loadModel } from "../src/engine/model-files.ts";
import type { QuantMode } from "../src/engine/quantize.ts";
import { ortNodeRuntime } from "../src/engine/runtimes/ort-node.ts";
import { logSoftmax } from "../src/engine/sampling.ts";
import { printTable } from "../src/report/table.ts";
import { writeResults } from "./lib/results.ts";

const { values } = benchArgs({
  options: {
    model: { type: "string", default: "models/fedflare-sotu-4m" },
    windows: { type: "string", default: "240" },
    window: { type: "string", default: "128" },
  },
});
const window = Number(values.window);
const { config, weights, tokenizer } = await loadModel(dirSource(values.model));
const docs = sotuSplit().heldOut.map((a) =>
  [config.bosTokenId ?? [], tokenizer.encode(a.text, { addSpecialTokens: false }), config.eosTokenIds.slice(0, 1)].flat(),
);
// An evenly spaced sample of the held-out windows, each scored on its own.
const all = packWindows(docs, window);
const every = Math.max(1, Math.floor(all.length / Number(values.windows)));
const windows = all.filter((_, i) => i % every === 0).slice(0, Number(values.windows));
const V = config.vocabSize;

const modes: QuantMode[] = ["f32", "int8", "int4"];
const perMode = new Map<QuantMode, { nll: number[]; logp: Float64Array[] }>();
for (const quant of modes) {
  process.stderr.write(`scoring ${windows.length} windows of ≤${window} tokens with ${quant} weights\n`);
  const model = await ForwardModel.create(ortNodeRuntime(), config, weights, { kind: "forward", quant, nll: true });
  const nll: number[] = [];
  const logp: Float64Array[] = [];
  for (const w of windows) {
    const input = w.slice(0, -1);
    const out = await model.run({ ids: [input], targets: [w.slice(1)] });
    nll.push(...out.nll!);
    for (let t = 0; t < input.length; t++) logp.push(logSoftmax(out.logits.subarray(t * V, (t + 1) * V)));
  }
  await model.release();
  perMode.set(quant, { nll, logp });
}

const float = perMode.get("f32")!;
const rows = modes.map((quant) => {
  const { nll, logp } = perMode.get(quant)!;
  const meanNll = nll.reduce((a, b) => a + b, 0) / nll.length;
  let kl = 0;
  let agree = 0;
  logp.forEach((q, t) => {
    const p = float.logp[t]!;
    let argP = 0;
    let argQ = 0;
    for (let v = 0; v < V; v++) {
      kl += Math.exp(p[v]!) * (p[v]! - q[v]!);
      if (p[v]! > p[argP]!) argP = v;
      if (q[v]! > q[argQ]!) argQ = v;
    }
    if (argP === argQ) agree++;
  });
  const ppl = Math.exp(meanNll);
  const graphBytes = buildLlamaGraph(config, weights, { kind: "forward", quant }).length;
  return { quant, tokens: nll.length, ppl, meanNll, kl: kl / logp.length, top1: agree / logp.length, graphBytes };
});
const floatPpl = rows[0]!.ppl;
printTable(
  ["weights", "tokens", "perplexity", "Δ vs f32", "mean KL(f32‖q) nats", "top-1 agreement", "graph MB"],
  rows.map((r) => [
    r.quant,
    r.tokens,
    r.ppl.toFixed(3),
    `${(((r.ppl - floatPpl) / floatPpl) * 100).toFixed(2)}%`,
    r.kl.toExponential(2),
    `${(r.top1 * 100).toFixed(1)}%`,
    (r.graphBytes / 2 ** 20).toFixed(2),
  ]),
);
writeResults("quantization", { model: values.model, text: "sotu held-out", windows: windows.length, window, config, rows });
