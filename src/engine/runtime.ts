// One session interface over onnxruntime-web (WASM) and onnxruntime-node: both expose the
// onnxruntime-common API, so a runtime is that module plus its session options.
import type { InferenceSession as OrtSession, Tensor as OrtTensor } from "onnxruntime-common";
import { encodeModel, type ExternalData, type ModelProto } from "./onnx/proto.ts";

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

/** What holds an onnxruntime session and frees it: a Session, a TrainStep, a ForwardModel. */
export interface Releasable {
  release(): Promise<void>;
}

/**
 * Sessions kept between calls, keyed by what determines their graph (a training step's plan, a forward
 * graph's options), so a Worker that advances a round a slice at a time builds each graph once; their
 * owner releases them.
 */
export type KeptSessions = Map<string, Releasable>;

/**
 * The session under `key`, built by `create` when absent: kept in `sessions`, its `release` then a no-op
 * (the owner's), or without them fresh, `release` freeing it.
 */
export async function keptSession<S extends Releasable>(
  sessions: KeptSessions | undefined,
  key: string,
  create: () => Promise<S>,
): Promise<{ session: S; release: () => Promise<void> }> {
  if (!sessions) {
    const session = await create();
    return { session, release: () => session.release() };
  }
  // The key names the graph, so what it holds is what `create` makes.
  let session = sessions.get(key) as S | undefined;
  if (!session) {
    session = await create();
    sessions.set(key, session);
  }
  return { session, release: async () => {} };
}

export type RuntimeName = "ort-web" | "ort-node";

export interface Runtime {
  readonly name: RuntimeName;
  /** A session of an encoded model, or of a ModelProto the runtime encodes as it takes it best. */
  createSession(model: Uint8Array | ModelProto): Promise<Session>;
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

/**
 * A model as onnxruntime takes it. onnxruntime-web gets the weights as external data: it copies each
 * from the JavaScript array it is given straight into its tensor in the WASM heap, where bytes with the
 * weights inline would be copied into the protobuf, into the heap, and parsed there before (the heap
 * never shrinks after). onnxruntime-node reads external data only from files, so it gets them inline.
 */
function sessionInput(name: RuntimeName, model: Uint8Array | ModelProto): { bytes: Uint8Array; options: OrtSession.SessionOptions } {
  if (model instanceof Uint8Array) return { bytes: model, options: {} };
  if (name !== "ort-web") return { bytes: encodeModel(model), options: {} };
  const external: ExternalData = new Map();
  const bytes = encodeModel(model, external);
  return { bytes, options: { externalData: [...external].map(([path, data]) => ({ path, data })) } };
}

export function ortRuntime(name: RuntimeName, ort: OrtModule, options: OrtSession.SessionOptions): Runtime {
  return {
    name,
    async createSession(model) {
      const input = sessionInput(name, model);
      const session = await ort.InferenceSession.create(input.bytes, { ...options, ...input.options });
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
