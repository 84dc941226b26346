// Builds models/tiny-random-llama: an untrained, seeded Llama in Hugging Face layout (GQA, untied head,
// byte-level BPE tokenizer) for trying the engine before the pretrained default model exists.
// Run: npm run build:tiny-model. Same seed, same bytes.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFiles } from "../cli/write-files.ts";
import { parseLlamaConfig } from "../src/engine/config.ts";
import { initLlamaWeights } from "../src/engine/llama/init.ts";
import { hfModelFiles } from "../src/engine/model-writer.ts";
import { trainByteLevelBpe } from "../src/engine/tokenizer/byte-level-bpe.ts";

const OUT = join(fileURLToPath(new URL("..", import.meta.url)), "models", "tiny-random-llama");
const SEED = 42;

const TEXT = [
  "Organisations keep private text in many places and want to post-train one language model on all of it without moving the data.",
  "Every client is a worker holding its own data partition and a quantized adapter model; an aggregator folds the adapter deltas into the global adapter.",
  "Heavy forward passes go to an inference endpoint. Clients that only see an API tune prompts or use zeroth-order estimates with shared seeds.",
  "The quick brown fox jumps over the lazy dog, and the dog sleeps in the afternoon sun while the fox runs into the woods.",
];

const tokenizer = trainByteLevelBpe(TEXT, { vocabSize: 384, specialTokens: ["<unk>", "<s>", "</s>"], bosToken: "<s>", minFrequency: 1 });
const vocabSize = Object.keys((tokenizer.model as { vocab: object }).vocab).length;
const config = parseLlamaConfig({
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: vocabSize,
  max_position_embeddings: 512,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
});
// Weights well above initialisation scale, so the untrained model's outputs are not all alike.
const weights = initLlamaWeights(config, { seed: SEED, std: 0.15, normStd: 0.1 });
const files = hfModelFiles(config, weights, tokenizer, { tokenizerConfig: { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", add_bos_token: true, model_max_length: 512 } });
files.set(
  "README.md",
  `# tiny-random-llama

An **untrained** Llama-family model with random weights (seed ${SEED}), made by \`npm run build:tiny-model\`
(scripts/build-tiny-model.ts). It exists to try and test fedflare's engine; its predictions mean nothing.

- ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} query heads over ${config.numKvHeads} key/value heads (GQA), head_dim ${config.headDim}, intermediate ${config.intermediateSize}, untied head
- byte-level BPE tokenizer, ${vocabSize} tokens, trained by fedflare's own trainer on ${TEXT.length} sentences
- float32 weights, ${[...weights.values()].reduce((s, w) => s + w.length, 0)} parameters
`,
);
writeFiles(OUT, files);
console.log(`wrote ${OUT} (${files.size} files, vocab ${vocabSize})`);
