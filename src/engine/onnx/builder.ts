// A small typed builder over ONNX graphs, in the manner of onnx's helper.py: nodes made by op type and
// value names, attributes sorted so that the same graph always encodes to the same bytes.
import {
  encodeModel,
  ElemType,
  type AttributeValue,
  type Dim,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfo,
} from "./proto.ts";

export const IR_VERSION = 10;
/** Opset 21: DequantizeLinear with block_size and INT4, the oldest opset with both. */
export const ONNX_OPSET = 21;

export interface OpOptions {
  domain?: string;
  /** Output names; a number asks for that many generated names. Default: one generated name. */
  outputs?: readonly string[] | number;
  name?: string;
}

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  private readonly names = new Set<string>();
  private readonly constants = new Map<string, string>();
  private counter = 0;

  readonly name: string;
  /** The float type of the graph's activations: constants and zeros made by helpers take it. */
  readonly floatType: typeof ElemType.FLOAT | typeof ElemType.DOUBLE;

  constructor(name: string, floatType: typeof ElemType.FLOAT | typeof ElemType.DOUBLE = ElemType.FLOAT) {
    this.name = name;
    this.floatType = floatType;
  }

  /** A name not used yet, derived from `hint`. */
  fresh(hint: string): string {
    let n = hint;
    while (this.names.has(n)) n = `${hint}_${++this.counter}`;
    this.names.add(n);
    return n;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`graph ${this.name}: value name "${name}" is defined twice`);
    this.names.add(name);
    return name;
  }

  input(name: string, elemType: ElemType, shape: readonly Dim[]): string {
    this.inputs.push({ name: this.claim(name), elemType, shape });
    return name;
  }

  output(name: string, elemType: ElemType, shape?: readonly Dim[]): void {
    this.outputs.push(shape ? { name, elemType, shape } : { name, elemType });
  }

  initializer(name: string, elemType: ElemType, dims: readonly number[], raw: Uint8Array): string {
    this.initializers.push({ name: this.claim(name), elemType, dims: [...dims], raw });
    return name;
  }

  /** A shared constant initializer; equal constants are stored once. */
  constant(
    elemType: typeof ElemType.INT64 | typeof ElemType.FLOAT | typeof ElemType.DOUBLE,
    values: readonly number[],
    dims: readonly number[] = [values.length],
  ): string {
    const key = `${elemType}|${dims.join(",")}|${values.join(",")}`;
    const existing = this.constants.get(key);
    if (existing) return existing;
    const raw = new Uint8Array(
      elemType === ElemType.INT64
        ? BigInt64Array.from(values, (v) => BigInt(v)).buffer
        : elemType === ElemType.DOUBLE
          ? Float64Array.from(values).buffer
          : Float32Array.from(values).buffer,
    );
    const name = this.fresh(elemType === ElemType.INT64 ? "const_i64" : "const_float");
    this.initializers.push({ name, elemType, dims: [...dims], raw });
    this.constants.set(key, name);
    return name;
  }

  ints(...values: number[]): string {
    return this.constant(ElemType.INT64, values);
  }

  /** A boolean scalar constant. */
  bool(value: boolean): string {
    const key = `bool|${value}`;
    const existing = this.constants.get(key);
    if (existing) return existing;
    const name = this.fresh("const_bool");
    this.initializers.push({ name, elemType: ElemType.BOOL, dims: [], raw: Uint8Array.of(value ? 1 : 0) });
    this.constants.set(key, name);
    return name;
  }

  /** A scalar of the graph's float type. */
  scalar(value: number): string {
    return this.constant(this.floatType, [value], []);
  }

  /** Zeros of the graph's float type with the shape held by the 1-D int64 value `shape`. */
  zeros(shape: string): string {
    const zero: TensorProto = {
      name: "",
      elemType: this.floatType,
      dims: [1],
      raw: new Uint8Array(this.floatType === ElemType.DOUBLE ? 8 : 4),
    };
    return this.op("ConstantOfShape", [shape], { value: zero });
  }

  /** Adds a node; returns its single output name. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttributeValue> = {}, opts: OpOptions = {}): string {
    return this.opN(opType, inputs, attrs, opts)[0]!;
  }

  /** Adds a node; returns all its output names. */
  opN(opType: string, inputs: readonly string[], attrs: Record<string, AttributeValue> = {}, opts: OpOptions = {}): string[] {
    const wanted = opts.outputs ?? 1;
    const outputs =
      typeof wanted === "number" ? Array.from({ length: wanted }, () => this.fresh(`${opType}_out`)) : wanted.map((o) => this.claim(o));
    const attributes = Object.keys(attrs)
      .sort()
      .map((k) => [k, attrs[k]!] as const);
    this.nodes.push({
      opType,
      domain: opts.domain ?? "",
      name: opts.name ?? `${opType}_${this.nodes.length}`,
      inputs: [...inputs],
      outputs,
      attributes,
    });
    return outputs;
  }

  graph(): GraphProto {
    return { name: this.name, nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs };
  }

  /** The ModelProto, to encode as a runtime takes it (runtime.ts); validates first. */
  toModel(extraOpsets: ReadonlyArray<{ domain: string; version: number }> = []): ModelProto {
    validateGraph(this.graph());
    return {
      irVersion: IR_VERSION,
      opsets: [{ domain: "", version: ONNX_OPSET }, ...extraOpsets],
      producerName: "fedflare",
      producerVersion: "0.1.0",
      graph: this.graph(),
    };
  }

  /** The encoded ModelProto; validates first. */
  toBytes(extraOpsets: ReadonlyArray<{ domain: string; version: number }> = []): Uint8Array {
    return encodeModel(this.toModel(extraOpsets));
  }
}

export class GraphValidationError extends Error {
  override readonly name = "GraphValidationError";
}

/** Every value used is defined before use, names are unique, and every output is produced. */
export function validateGraph(g: GraphProto): void {
  const defined = new Set<string>([""]);
  const define = (n: string, what: string) => {
    if (defined.has(n)) throw new GraphValidationError(`graph ${g.name}: ${what} "${n}" redefines an existing value`);
    defined.add(n);
  };
  for (const i of g.inputs) define(i.name, "input");
  for (const t of g.initializers) define(t.name, "initializer");
  for (const n of g.nodes) {
    for (const i of n.inputs)
      if (!defined.has(i))
        throw new GraphValidationError(`graph ${g.name}: node ${n.name} (${n.opType}) reads "${i}" before it is defined`);
    for (const o of n.outputs) define(o, `output of node ${n.name}`);
  }
  for (const o of g.outputs)
    if (!defined.has(o.name)) throw new GraphValidationError(`graph ${g.name}: output "${o.name}" is never produced`);
}
