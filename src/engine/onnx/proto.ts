// ONNX protobuf messages we emit, encoded with protobufjs's Writer (no reflection, no eval: runs in
// workerd). Field numbers are those of onnx/onnx.proto (IR version 10).
import protobuf from "protobufjs/minimal.js";

const { Writer } = protobuf;
type Writer = protobuf.Writer;

/** TensorProto.DataType values. */
export const ElemType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
  UINT4: 21,
  INT4: 22,
} as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

export interface TensorProto {
  name: string;
  elemType: ElemType;
  dims: readonly number[];
  /** Little-endian element bytes (INT4/UINT4 packed two per byte, low nibble first). */
  raw: Uint8Array;
}

export type Dim = number | string;

export interface ValueInfo {
  name: string;
  elemType: ElemType;
  /** Omitted when the shape is not declared. */
  shape?: readonly Dim[];
}

export type AttributeValue = number | string | readonly number[] | TensorProto | { float: number } | { floats: readonly number[] };

export interface NodeProto {
  opType: string;
  domain: string;
  name: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes: ReadonlyArray<readonly [string, AttributeValue]>;
}

export interface GraphProto {
  name: string;
  nodes: readonly NodeProto[];
  initializers: readonly TensorProto[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
}

export interface ModelProto {
  irVersion: number;
  opsets: ReadonlyArray<{ domain: string; version: number }>;
  producerName: string;
  producerVersion: string;
  graph: GraphProto;
}

const LEN = 2;
const VARINT = 0;
const I32 = 5;
const tag = (field: number, wire: number) => (field << 3) | wire;

function message(w: Writer, field: number, body: (w: Writer) => void): void {
  w.uint32(tag(field, LEN)).fork();
  body(w);
  w.ldelim();
}

function str(w: Writer, field: number, s: string): void {
  if (s !== "") w.uint32(tag(field, LEN)).string(s);
}

function int(w: Writer, field: number, n: number): void {
  w.uint32(tag(field, VARINT)).int64(n);
}

/** Initializers from this size up are written as external data when the encoder is given a place for it. */
export const EXTERNAL_DATA_MIN_BYTES = 1024;

/** External data by location: each initializer's bytes as given (no copy), at offset 0 of a "file" of its own. */
export type ExternalData = Map<string, Uint8Array>;

function writeTensor(w: Writer, t: TensorProto, external?: ExternalData): void {
  for (const d of t.dims) int(w, 1, d);
  w.uint32(tag(2, VARINT)).int32(t.elemType);
  str(w, 8, t.name);
  if (external && t.raw.length >= EXTERNAL_DATA_MIN_BYTES) {
    const location = `x${external.size}`;
    external.set(location, t.raw);
    // TensorProto.external_data (13: StringStringEntryProto key 1, value 2), data_location (14) EXTERNAL = 1.
    for (const [key, value] of [
      ["location", location],
      ["offset", "0"],
      ["length", String(t.raw.length)],
    ])
      message(w, 13, (e) => {
        str(e, 1, key!);
        str(e, 2, value!);
      });
    w.uint32(tag(14, VARINT)).int32(1);
  } else w.uint32(tag(9, LEN)).bytes(t.raw);
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;

function writeAttribute(w: Writer, name: string, v: AttributeValue): void {
  str(w, 1, name);
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer; wrap floats as {float: x}`);
    int(w, 3, v);
    w.uint32(tag(20, VARINT)).int32(ATTR_INT);
  } else if (typeof v === "string") {
    w.uint32(tag(4, LEN)).bytes(new TextEncoder().encode(v));
    w.uint32(tag(20, VARINT)).int32(ATTR_STRING);
  } else if (Array.isArray(v)) {
    for (const x of v as readonly number[]) int(w, 8, x);
    w.uint32(tag(20, VARINT)).int32(ATTR_INTS);
  } else if ("float" in v) {
    w.uint32(tag(2, I32)).float(v.float);
    w.uint32(tag(20, VARINT)).int32(ATTR_FLOAT);
  } else if ("floats" in v) {
    for (const x of v.floats) w.uint32(tag(7, I32)).float(x);
    w.uint32(tag(20, VARINT)).int32(ATTR_FLOATS);
  } else {
    message(w, 5, (m) => writeTensor(m, v as TensorProto));
    w.uint32(tag(20, VARINT)).int32(ATTR_TENSOR);
  }
}

function writeNode(w: Writer, n: NodeProto): void {
  for (const i of n.inputs) w.uint32(tag(1, LEN)).string(i);
  for (const o of n.outputs) w.uint32(tag(2, LEN)).string(o);
  str(w, 3, n.name);
  str(w, 4, n.opType);
  for (const [name, v] of n.attributes) message(w, 5, (m) => writeAttribute(m, name, v));
  str(w, 7, n.domain);
}

function writeValueInfo(w: Writer, v: ValueInfo): void {
  str(w, 1, v.name);
  message(w, 2, (type) =>
    message(type, 1, (tensor) => {
      tensor.uint32(tag(1, VARINT)).int32(v.elemType);
      if (v.shape)
        message(tensor, 2, (shape) => {
          for (const d of v.shape!) message(shape, 1, (dim) => (typeof d === "number" ? int(dim, 1, d) : str(dim, 2, d)));
        });
    }),
  );
}

function writeGraph(w: Writer, g: GraphProto, external?: ExternalData): void {
  for (const n of g.nodes) message(w, 1, (m) => writeNode(m, n));
  str(w, 2, g.name);
  for (const t of g.initializers) message(w, 5, (m) => writeTensor(m, t, external));
  for (const v of g.inputs) message(w, 11, (m) => writeValueInfo(m, v));
  for (const v of g.outputs) message(w, 12, (m) => writeValueInfo(m, v));
}

/**
 * The model's protobuf bytes. With `external`, initializers of EXTERNAL_DATA_MIN_BYTES or more are left
 * out of the bytes and put there instead (ONNX external data), so the weights are not copied into them.
 */
export function encodeModel(model: ModelProto, external?: ExternalData): Uint8Array {
  // The plain Writer, not Writer.create(): where a global Buffer exists (workerd with nodejs_compat)
  // create() picks BufferWriter, whose utf8Write at an offset throws in workerd.
  const w = new Writer();
  int(w, 1, model.irVersion);
  str(w, 2, model.producerName);
  str(w, 3, model.producerVersion);
  message(w, 7, (m) => writeGraph(m, model.graph, external));
  for (const o of model.opsets)
    message(w, 8, (m) => {
      str(m, 1, o.domain);
      int(m, 2, o.version);
    });
  return w.finish();
}
