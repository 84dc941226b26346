// The Llama forward graph runs inside workerd on onnxruntime-web and gives the logits that
// onnxruntime-node gives in Node (1e-4), bit for bit those of onnxruntime-web in Node, and the float64
// reference's (1e-4). The Node-side logits come from the project's global setup.
import { describe, expect, inject, it } from "vitest";
import { ForwardModel } from "../../src/engine/forward.ts";
import { workerdOrtRuntime } from "../../workers/lib/ort-workerd.ts";
import { maxAbsDiff } from "../fixtures/compare.ts";
import { decodeLogits, parityCase } from "../fixtures/parity-case.ts";
import { referenceLogits } from "../reference/llama-f64.ts";

describe("Llama forward inside workerd (onnxruntime-web)", () => {
  it("agrees with onnxruntime-node, onnxruntime-web in Node and the float64 reference", async () => {
    expect(navigator.userAgent).toBe("Cloudflare-Workers");
    const c = parityCase();
    const model = await ForwardModel.create(workerdOrtRuntime(), c.config, c.weights);
    const { logits } = await model.run({ ids: c.ids, mask: c.mask });
    await model.release();

    const node = decodeLogits(inject("parityLogits"));
    expect(maxAbsDiff(logits, node.get("ort-node")!)).toBeLessThan(1e-4);
    expect(maxAbsDiff(logits, node.get("ort-web-node")!)).toBe(0);
    // Padded positions are compared too: they attend only to earlier real tokens, as in transformers.
    expect(maxAbsDiff(logits, referenceLogits(c.config, c.weights, c))).toBeLessThan(1e-4);
    // The rows differ, so agreement is not trivial.
    const rowSize = c.ids[0]!.length * c.config.vocabSize;
    expect(maxAbsDiff(logits.subarray(0, rowSize), logits.subarray(rowSize))).toBeGreaterThan(0.1);
  });
});
