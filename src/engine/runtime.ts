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

/** What holds an onnxruntime session and frees it: a Session, a TrainStep, a ForwardModel. */
export interface Releasable {
  release(): Promise<void>;
}

/**
 * Sessions kept between calls, keyed by what determines their graph (a training step's plan, a forward
 * graph's options), so a Worker that advances a round a slice at a time builds each graph once; their
 * owner releases them. A Map is one; `beforeCreate` lets an owner release sessions it will not need
 * before a new one is built, so the new one reuses their memory.
 */
export interface KeptSessions {
  get(key: string): Releasable | undefined;
  set(key: string, session: Releasable): void;
  beforeCreate?(key: string): Promise<void>;
}

/**
 * Sessions kept across an owner's jobs (a client's rounds of one federation): a job that asks for a key
 * gets its session, built in an earlier job or not; the first session a job builds anew releases those
 * the job has not asked for, so what is held is at most one job's graphs. `startJob` begins a job.
 */
export class JobSessions implements KeptSessions {
  private readonly kept = new Map<string, Releasable>();
  private asked = new Set<string>();

  startJob(): void {
    this.asked = new Set();
  }

  get(key: string): Releasable | undefined {
    this.asked.add(key);
    return this.kept.get(key);
  }

  set(key: string, session: Releasable): void {
    this.kept.set(key, session);
  }

  async beforeCreate(): Promise<void> {
    for (const [key, session] of [...this.kept])
      if (!this.asked.has(key)) {
        this.kept.delete(key);
        await session.release();
      }
  }

  /** How many sessions are held. */
  get size(): number {
    return this.kept.size;
  }
}

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
    await sessions.beforeCreate?.(key);
    session = await create();
    sessions.set(key, session);
  }
  return { session, release: async () => {} };
}

export type RuntimeName = "ort-web" | "ort-node";

export interface Runtime {
  readonly name: RuntimeName;
  /** Whether graphs for this runtime keep their large weights out of the model bytes (GraphBuilder's externalAbove). */
  readonly externalWeights: boolean;
  /** A session over the model bytes and the external-data files they name (file name -> bytes). */
  createSession(model: Uint8Array, external?: ReadonlyMap<string, Uint8Array>, opts?: SessionChoices): Promise<Session>;
}

export interface SessionChoices {
  /**
   * False: no weight prepacking. ORT keeps a packed copy of every constant Gemm weight beside it (two in a
   * training graph), about twice float weights more in a heap that never shrinks (a 189 MiB float model's
   * LoRA client in workerd: 905 -> 608 MiB over idle, bench/results/client-memory.json) for 3-9 % of a
   * step; a graph on a quantized base has no constant float weight, and there it costs memory instead
   * (SmolLM-135M's shape, split LoRA: 83 -> 119 MiB of WASM heap).
   */
  prepack?: boolean;
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

export function ortRuntime(name: RuntimeName, ort: OrtModule, options: OrtSession.SessionOptions, externalWeights = false): Runtime {
  return {
    name,
    externalWeights,
    async createSession(model, external = new Map(), choices = {}) {
      const externalData = [...external].map(([path, data]) => ({ path, data }));
      const session = await ort.InferenceSession.create(model, {
        ...options,
        ...(externalData.length ? { externalData } : {}),
        ...(choices.prepack === false ? { extra: { session: { disable_prepacking: "1" } } } : {}),
      });
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
