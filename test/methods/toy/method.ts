// A toy method defined only in this folder: every client's value is the mean length of its records'
// text, and a version is one scalar, the running example-weighted mean of those values (FedAvg of
// value − global). It exists to show that a method is one folder: it registers itself in the worker
// entries beside it, and nothing outside this folder names it.
import * as v from "valibot";
import { updateMetadata } from "../../../src/fl/client/upload.ts";
import type { ClientMethod, ServerMethod } from "../../../src/fl/methods/method.ts";
import { tensorVersion } from "../../../src/fl/methods/shared/versions.ts";
import { encodeTensorFile } from "../../../src/fl/tensor-file.ts";

export const ToyConfig = v.strictObject({ type: v.literal("toy-mean") });
export type ToyConfig = v.InferOutput<typeof ToyConfig>;
export const VALUE = "value";

/** What a client contributes: the mean number of characters of its records. */
export const recordLength = (r: { text?: string; prompt?: string; completion?: string }) =>
  (r.text ?? "").length + (r.prompt ?? "").length + (r.completion ?? "").length;

export const toyServer: ServerMethod<ToyConfig> = {
  type: "toy-mean",
  config: ToyConfig,
  strategies: { names: ["fedavg"], why: "the toy's version is a plain weighted mean" },
  footprints: () => ({}),
  planRows: () => [],
  versionFloats: () => 1,
  initial: () => ({ tensors: tensorVersion([[VALUE, Float32Array.of(0), [1]]]), description: '{"method": "toy-mean"}\n' }),
};

export const toyClient: ClientMethod<ToyConfig> = {
  type: "toy-mean",
  config: ToyConfig,
  placement: () => "local",
  demands: () => ({ steps: 1, remoteRows: 0 }),
  async slice({ global, resources }) {
    const { raw } = await resources.prompts();
    const mean = raw.reduce((s, r) => s + recordLength(r), 0) / raw.length;
    const delta = new Map([[VALUE, Float32Array.of(mean - global.tensors.get(VALUE)![0]!)]]);
    return encodeTensorFile(delta, global.shapes, updateMetadata(raw.length, { mean_length: mean }));
  },
};
