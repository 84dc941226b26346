/**
 * The safetensors format (https://github.com/huggingface/safetensors, README "Format"):
 * an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header, then the data buffer. The header maps
 * tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data buffer)
 * plus an optional "__metadata__" string-to-string map.
 */
import { DTYPE_BYTES, isDType, type DType } from "./dtypes.ts";
import { ProtocolError } from "./errors.ts";

export type SafetensorsErrorCode =
  | "too_short"
  | "header_too_large"
  | "header_out_of_bounds"
  | "header_not_utf8"
  | "header_not_json"
  | "header_not_object"
  | "header_bad_start"
  | "duplicate_tensor"
  | "metadata_not_object"
  | "metadata_value_not_string"
  | "metadata_duplicate_key"
  | "bad_tensor_entry"
  | "unknown_dtype"
  | "bad_shape"
  | "bad_offsets"
  | "size_mismatch"
  | "offsets_gap"
  | "offsets_overlap"
  | "out_of_bounds"
  | "trailing_bytes"
  | "writer_bad_input";

export class SafetensorsError extends ProtocolError<SafetensorsErrorCode> {
  constructor(code: SafetensorsErrorCode, message: string) {
    super(code, message);
    this.name = "SafetensorsError";
  }
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: SafetensorsError };

export interface ParseOptions {
  /** Largest header accepted, in bytes. Default 100_000_000, the reference implementation's cap. */
  maxHeaderBytes?: number;
}

/** A tensor's header entry; `dataOffsets` are relative to the start of the data buffer. */
export interface TensorInfo {
  dtype: DType;
  shape: number[];
  dataOffsets: [begin: number, end: number];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  /** In data-buffer order. */
  tensors: Map<string, TensorInfo>;
  /** Offset of the data buffer in the file: 8 + N. */
  dataStart: number;
  /** Length the data buffer must have: the end of the last tensor. */
  dataBytes: number;
}

/** A tensor's raw little-endian bytes; `data` is a view into the parsed input, not a copy. */
export interface TensorEntry {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  /** In data-buffer order. */
  tensors: Map<string, TensorEntry>;
}

/** Typed arrays are written as their bytes (little-endian, see dtypes.ts). */
export interface TensorInput {
  dtype: DType;
  shape: number[];
  data: Uint8Array | Int8Array | Uint16Array | Int32Array | Uint32Array | Float32Array | BigInt64Array;
}

const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = "__metadata__";
const ENTRY_FIELDS = ["dtype", "shape", "data_offsets"];
// The reference writer orders tensors by its Dtype enum, descending, then by name: with the header
// padded to 8 bytes every tensor then starts aligned to its element size.
const LAYOUT_ORDER: readonly DType[] = ["I64", "F32", "U32", "I32", "BF16", "F16", "I8", "U8"];

function fail(code: SafetensorsErrorCode, message: string): never {
  throw new SafetensorsError(code, message);
}

function attempt<T>(f: () => T): ParseResult<T> {
  try {
    return { ok: true, value: f() };
  } catch (error) {
    if (error instanceof SafetensorsError) return { ok: false, error };
    throw error;
  }
}

const quote = JSON.stringify;
const showShape = (shape: number[]) => `[${shape.join(", ")}]`;

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isCount(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}

function byteLength(dtype: DType, shape: number[]): number {
  return shape.reduce((n, d) => n * d, 1) * DTYPE_BYTES[dtype];
}

/** Parses and validates the header only; `bytes` may be just the first `8 + N` bytes of a file. */
export function parseSafetensorsHeader(bytes: Uint8Array, opts?: ParseOptions): ParseResult<SafetensorsHeader> {
  return attempt(() => readSafetensorsHeader(bytes, opts));
}

/** Throwing variant of `parseSafetensorsHeader`. */
export function readSafetensorsHeader(bytes: Uint8Array, opts?: ParseOptions): SafetensorsHeader {
  const cap = opts?.maxHeaderBytes ?? MAX_HEADER_BYTES;
  if (bytes.byteLength < 8) {
    fail("too_short", `file is ${bytes.byteLength} bytes; a safetensors file starts with an 8-byte header length`);
  }
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(cap)) fail("header_too_large", `header length ${n} bytes is over the cap of ${cap} bytes`);
  const headerBytes = Number(n);
  const dataStart = 8 + headerBytes;
  if (dataStart > bytes.byteLength) {
    fail(
      "header_out_of_bounds",
      `header length ${headerBytes} bytes runs past the end of the input (${bytes.byteLength - 8} bytes after the length)`,
    );
  }

  let text: string;
  try {
    // ignoreBOM keeps a leading BOM in the text (by default it is dropped), so that such a header
    // is rejected, as the reference rejects it.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    fail("header_not_utf8", "header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    fail("header_not_json", `header is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(json)) fail("header_not_object", "header must be a JSON object mapping tensor names to entries");
  // The reference defines InvalidHeaderStart for a first byte other than "{" (its check is not yet
  // switched on); only trailing spaces may pad a header.
  if (!text.startsWith("{")) fail("header_bad_start", `header must start with "{", found ${quote(text.slice(0, 1))}`);
  checkDuplicateKeys(text);

  let metadata: Record<string, string> = {};
  const infos: [string, TensorInfo][] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === METADATA_KEY) metadata = checkMetadata(entry);
    else infos.push([name, checkEntry(name, entry)]);
  }

  // Reference rule: sorted by offsets, tensors must tile [0, end) exactly: no gaps, no overlaps.
  infos.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let end = 0;
  let previous: string | undefined;
  for (const [
    name,
    {
      dataOffsets: [begin, stop],
    },
  ] of infos) {
    if (begin > end) {
      fail(
        "offsets_gap",
        previous === undefined
          ? `tensor ${quote(name)} starts at byte ${begin} but the data buffer must start with a tensor at 0`
          : `tensor ${quote(name)} starts at byte ${begin} but the previous tensor ${quote(previous)} ends at ${end} (gap of ` +
              `${begin - end} bytes)`,
      );
    }
    if (begin < end) {
      fail("offsets_overlap", `tensor ${quote(name)} starts at byte ${begin}, inside tensor ${quote(previous)} which ends at ${end}`);
    }
    end = stop;
    previous = name;
  }
  return { metadata, tensors: new Map(infos), dataStart, dataBytes: end };
}

function checkMetadata(entry: unknown): Record<string, string> {
  if (!isObject(entry)) fail("metadata_not_object", `${METADATA_KEY} must be an object of strings, got ${quote(entry)}`);
  for (const [key, value] of Object.entries(entry)) {
    if (typeof value !== "string") {
      fail("metadata_value_not_string", `${METADATA_KEY} key ${quote(key)} is ${quote(value)}; metadata values must be strings`);
    }
  }
  return entry as Record<string, string>;
}

function checkEntry(name: string, entry: unknown): TensorInfo {
  const where = `tensor ${quote(name)}`;
  if (!isObject(entry)) fail("bad_tensor_entry", `${where}: entry must be an object with ${ENTRY_FIELDS.join(", ")}`);
  for (const key of Object.keys(entry)) {
    if (!ENTRY_FIELDS.includes(key)) fail("bad_tensor_entry", `${where}: unknown field ${quote(key)}`);
  }
  for (const key of ENTRY_FIELDS) {
    if (!Object.hasOwn(entry, key)) fail("bad_tensor_entry", `${where}: missing field ${quote(key)}`);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (!isDType(dtype)) {
    fail("unknown_dtype", `${where}: dtype ${quote(dtype)} is not one of ${Object.keys(DTYPE_BYTES).join(", ")}`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    fail("bad_shape", `${where}: shape ${quote(shape)} must be an array of non-negative integers`);
  }
  const [begin, end] = Array.isArray(offsets) && offsets.length === 2 ? offsets : [];
  if (!isCount(begin) || !isCount(end) || end < begin) {
    fail("bad_offsets", `${where}: data_offsets ${quote(offsets)} must be [begin, end] with 0 <= begin <= end`);
  }
  const need = byteLength(dtype, shape);
  if (end - begin !== need) {
    fail(
      "size_mismatch",
      `${where}: data spans ${begin}..${end} (${end - begin} bytes) but ${dtype} ${showShape(shape)} needs ${need} bytes`,
    );
  }
  return { dtype, shape, dataOffsets: [begin, end] };
}

/**
 * JSON.parse keeps the last of duplicate keys; the format disallows duplicates, so the (already
 * valid) JSON text is scanned for them in the top-level object and in the objects directly under
 * it: deeper objects are never valid in a header.
 */
function checkDuplicateKeys(text: string): void {
  type Frame = { keys: Set<string> | null; owner: string };
  const stack: Frame[] = [];
  let expectKey = false;
  let lastKey = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === "\\") i++;
      const frame = stack.at(-1);
      if (!expectKey || !frame?.keys) continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (frame.keys.has(key)) {
        if (stack.length === 1) fail("duplicate_tensor", `header has key ${quote(key)} more than once`);
        if (frame.owner === METADATA_KEY) fail("metadata_duplicate_key", `${METADATA_KEY} has key ${quote(key)} more than once`);
        fail("bad_tensor_entry", `tensor ${quote(frame.owner)}: field ${quote(key)} appears more than once`);
      }
      frame.keys.add(key);
      lastKey = key;
      expectKey = false;
    } else if (c === "{") {
      stack.push({ keys: stack.length < 2 ? new Set() : null, owner: lastKey });
      expectKey = true;
    } else if (c === "[") {
      stack.push({ keys: null, owner: lastKey });
    } else if (c === "}" || c === "]") {
      stack.pop();
    } else if (c === ",") {
      expectKey = stack.at(-1)?.keys != null;
    }
  }
}

/** Parses and validates a whole safetensors file, returning errors as data. */
export function parseSafetensors(bytes: Uint8Array, opts?: ParseOptions): ParseResult<SafetensorsFile> {
  return attempt(() => readSafetensors(bytes, opts));
}

/** Throwing variant of `parseSafetensors`. */
export function readSafetensors(bytes: Uint8Array, opts?: ParseOptions): SafetensorsFile {
  const header = readSafetensorsHeader(bytes, opts);
  const available = bytes.byteLength - header.dataStart;
  if (header.dataBytes > available) {
    const last = [...header.tensors.keys()].at(-1);
    fail("out_of_bounds", `tensor ${quote(last)} ends at byte ${header.dataBytes} of the data buffer, which has only ${available} bytes`);
  }
  if (header.dataBytes < available) {
    fail("trailing_bytes", `data buffer has ${available} bytes but the tensors end at ${header.dataBytes}`);
  }
  const tensors = new Map<string, TensorEntry>();
  for (const [
    name,
    {
      dtype,
      shape,
      dataOffsets: [begin, end],
    },
  ] of header.tensors) {
    tensors.set(name, { dtype, shape, data: bytes.subarray(header.dataStart + begin, header.dataStart + end) });
  }
  return { metadata: header.metadata, tensors };
}

/**
 * Serializes tensors as the reference writer does, so the same input always gives the same bytes:
 * tensors laid out by dtype alignment (I64, F32, U32, I32, BF16, F16, I8, U8) then name, header entries
 * in that order after `__metadata__` (whose keys are sorted), header padded with spaces to a
 * multiple of 8 bytes. `metadata` defaults to {"format": "pt"}, which PyTorch loaders expect.
 */
export function writeSafetensors(
  tensors: Record<string, TensorInput> | Map<string, TensorInput>,
  metadata: Record<string, string> = { format: "pt" },
): Uint8Array<ArrayBuffer> {
  const entries = [...(tensors instanceof Map ? tensors : Object.entries(tensors))];
  for (const [name, tensor] of entries) checkInput(name, tensor);
  if (!isObject(metadata) || !Object.values(metadata).every((v) => typeof v === "string")) {
    fail("writer_bad_input", `metadata must be an object of strings, got ${quote(metadata)}`);
  }
  const { header, order, dataBytes } = safetensorsHeader(
    entries.map(([name, { dtype, shape }]) => [name, { dtype, shape }]),
    metadata,
  );
  const byName = new Map(entries);
  const out = new Uint8Array(header.length + dataBytes);
  out.set(header);
  let at = header.length;
  for (const name of order) {
    const { data } = byName.get(name)!;
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    at += data.byteLength;
  }
  return out;
}

/**
 * The header writeSafetensors writes for tensors of these dtypes and shapes (the 8-byte length, the JSON,
 * its padding), the order their data follows in, and the data's length: for writing a file a part at a
 * time when its values are not all in memory at once.
 */
export function safetensorsHeader(
  tensors: readonly (readonly [string, { dtype: DType; shape: number[] }])[],
  metadata: Record<string, string> = { format: "pt" },
): { header: Uint8Array<ArrayBuffer>; order: string[]; dataBytes: number } {
  const entries = [...tensors].sort(
    ([a, x], [b, y]) => LAYOUT_ORDER.indexOf(x.dtype) - LAYOUT_ORDER.indexOf(y.dtype) || compareCodePoints(a, b),
  );
  const fields = [
    `${quote(METADATA_KEY)}:{${Object.keys(metadata)
      .sort(compareCodePoints)
      .map((k) => `${quote(k)}:${quote(metadata[k])}`)
      .join(",")}}`,
  ];
  let offset = 0;
  for (const [name, { dtype, shape }] of entries) {
    const bytes = byteLength(dtype, shape);
    fields.push(`${quote(name)}:{"dtype":"${dtype}","shape":[${shape.join(",")}],"data_offsets":[${offset},${offset + bytes}]}`);
    offset += bytes;
  }
  const json = new TextEncoder().encode(`{${fields.join(",")}}`);
  const headerBytes = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + headerBytes);
  new DataView(header.buffer).setBigUint64(0, BigInt(headerBytes), true);
  header.set(json, 8);
  header.fill(0x20, 8 + json.byteLength);
  return { header, order: entries.map(([name]) => name), dataBytes: offset };
}

function checkInput(name: string, tensor: TensorInput): void {
  const where = `tensor ${quote(name)}`;
  if (name === "") fail("writer_bad_input", "tensor names must not be empty");
  if (name === METADATA_KEY) fail("writer_bad_input", `${where}: the name is reserved for metadata`);
  if (!isDType(tensor.dtype))
    fail("writer_bad_input", `${where}: dtype ${quote(tensor.dtype)} is not one of ${Object.keys(DTYPE_BYTES).join(", ")}`);
  if (!Array.isArray(tensor.shape) || !tensor.shape.every(isCount)) {
    fail("writer_bad_input", `${where}: shape ${quote(tensor.shape)} must be an array of non-negative integers`);
  }
  if (!ArrayBuffer.isView(tensor.data)) fail("writer_bad_input", `${where}: data must be a typed array`);
  const need = byteLength(tensor.dtype, tensor.shape);
  if (tensor.data.byteLength !== need) {
    fail(
      "writer_bad_input",
      `${where}: data has ${tensor.data.byteLength} bytes but ${tensor.dtype} ${showShape(tensor.shape)} needs ${need} bytes`,
    );
  }
}

/** Orders strings by code point, as Rust orders `String`s (UTF-16 code units order differently). */
function compareCodePoints(a: string, b: string): number {
  for (let i = 0; i < a.length && i < b.length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return lift(x) - lift(y);
  }
  return a.length - b.length;
}

// Surrogates (D800-DFFF) encode code points above FFFF: move them above E000-FFFF.
const lift = (unit: number) => (unit >= 0xd800 ? (unit < 0xe000 ? unit + 0x2000 : unit - 0x800) : unit);
