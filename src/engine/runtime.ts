// One session interface over onnxruntime-web (WASM) and onnxruntime-node: both expose the
// onnxruntime-common API, so a runtime is that module plus its session options.
import type { InferenceSession as OrtSession, Tensor as OrtTensor } from "onnxruntime-common";

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

export interface HostTensor {
  data: TensorData;
  dims: readonly number[];
}

export interface Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, HostTensor>, outputs?: readonly string[]): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

export type RuntimeName = "ort-web" | "ort-node";

export interface Runtime {
  readonly name: RuntimeName;
  createSession(model: Uint8Array): Promise<Session>;
}

/** The part of an onnxruntime package that we use. */
export interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options?: OrtSession.SessionOptions): Promise<OrtSession> };
  Tensor: new (type: OrtTensor.Type, data: TensorData, dims: readonly number[]) => OrtTensor;
}

function elementType(data: TensorData): OrtTensor.Type {
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof Int8Array) return "int8";
  return "uint8";
}

export function ortRuntime(name: RuntimeName, ort: OrtModule, options: OrtSession.SessionOptions): Runtime {
  return {
    name,
    async createSession(model) {
      const session = await ort.InferenceSession.create(model, options);
      return {
        inputNames: session.inputNames,
        outputNames: session.outputNames,
        async run(feeds, outputs) {
          const ortFeeds: Record<string, OrtTensor> = {};
          for (const [k, t] of Object.entries(feeds)) ortFeeds[k] = new ort.Tensor(elementType(t.data), t.data, t.dims);
          const result = outputs ? await session.run(ortFeeds, [...outputs]) : await session.run(ortFeeds);
          const out: Record<string, HostTensor> = {};
          for (const [k, t] of Object.entries(result)) {
            out[k] = { data: t.data as TensorData, dims: t.dims };
            t.dispose();
          }
          return out;
        },
        release: () => session.release(),
      };
    },
  };
}
