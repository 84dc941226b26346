import { describe, it, expect } from "vitest";
import { DTYPE_BYTES, type DType } from "../../src/protocol/dtypes.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";
import {
  parseSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
  writeSafetensors,
  type SafetensorsErrorCode,
  type TensorInput,
} from "../../src/protocol/safetensors.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

/** Builds a file by hand: u64 LE header length (default: the header's), header bytes, data. */
function file(header: string | Uint8Array, data: number | Uint8Array = 0, length?: bigint): Uint8Array {
  const h = typeof header === "string" ? utf8(header) : header;
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.byteLength + d.byteLength);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(d, 8 + h.byteLength);
  return out;
}

const headerText = (bytes: Uint8Array) =>
  new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true))));

const entry = (dtype: string, shape: unknown, offsets: unknown) => JSON.stringify({ dtype, shape, data_offsets: offsets });

const EXAMPLES: Record<DType, TensorInput["data"]> = {
  F32: new Float32Array([1.5, -2, Infinity, NaN, 3.25, -0]),
  F16: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x7e00]),
  BF16: new Uint16Array([0x3f80, 0xc000, 0x7f7f, 0x0001, 0xff80, 0x7fc0]),
  I8: new Int8Array([-128, -1, 0, 1, 2, 127]),
  U8: new Uint8Array([0, 1, 2, 128, 254, 255]),
  I32: new Int32Array([-(2 ** 31), -1, 0, 1, 7, 2 ** 31 - 1]),
  U32: new Uint32Array([0, 1, 7, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1]),
  I64: new BigInt64Array([-(2n ** 63n), -1n, 0n, 1n, 2n ** 40n, 2n ** 63n - 1n]),
};

const bytesOf = (d: TensorInput["data"]) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

describe("writeSafetensors / readSafetensors", () => {
  it.each(Object.keys(EXAMPLES) as DType[])("round-trips %s", (dtype) => {
    const data = EXAMPLES[dtype];
    const bytes = writeSafetensors({ "layer.0.w": { dtype, shape: [2, 3], data } });
    const parsed = readSafetensors(bytes);
    expect(parsed.metadata).toEqual({ format: "pt" });
    expect([...parsed.tensors.keys()]).toEqual(["layer.0.w"]);
    const t = parsed.tensors.get("layer.0.w")!;
    expect(t.dtype).toBe(dtype);
    expect(t.shape).toEqual([2, 3]);
    expect(t.data).toEqual(bytesOf(data));
  });

  it("round-trips all dtypes in one file, each tensor aligned to its element size", () => {
    const input = Object.fromEntries(
      (Object.keys(EXAMPLES) as DType[]).map((dtype) => [`t.${dtype}`, { dtype, shape: [6], data: EXAMPLES[dtype] }]),
    );
    const parsed = readSafetensors(writeSafetensors(input, { format: "pt", note: "x" }));
    expect(parsed.metadata).toEqual({ format: "pt", note: "x" });
    for (const [name, t] of parsed.tensors) {
      expect(t.data).toEqual(bytesOf(input[name]!.data));
      expect(t.data.byteOffset % DTYPE_BYTES[t.dtype]).toBe(0);
    }
    // Data-buffer order is the reference writer's: dtype alignment, descending.
    expect([...parsed.tensors.keys()]).toEqual(["t.I64", "t.F32", "t.U32", "t.I32", "t.BF16", "t.F16", "t.I8", "t.U8"]);
  });

  it("is deterministic: same bytes twice and whatever the insertion order", () => {
    const a: TensorInput = { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) };
    const b: TensorInput = { dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) };
    const c: TensorInput = { dtype: "F32", shape: [1], data: new Float32Array([3]) };
    const first = writeSafetensors({ a, b, c }, { z: "1", a: "2" });
    expect(writeSafetensors({ a, b, c }, { z: "1", a: "2" })).toEqual(first);
    expect(
      writeSafetensors(
        new Map([
          ["c", c],
          ["b", b],
          ["a", a],
        ]),
        { a: "2", z: "1" },
      ),
    ).toEqual(first);
    expect(headerText(first).trimEnd()).toBe(
      '{"__metadata__":{"a":"2","z":"1"},' +
        '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
        '"c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},' +
        '"b":{"dtype":"U8","shape":[3],"data_offsets":[12,15]}}',
    );
  });

  it("pads the header with spaces to a multiple of 8 bytes", () => {
    for (let len = 1; len <= 9; len++) {
      const bytes = writeSafetensors({ ["x".repeat(len)]: { dtype: "U8", shape: [1], data: new Uint8Array([7]) } });
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      expect(n % 8).toBe(0);
      const text = headerText(bytes);
      expect(text.trimEnd().endsWith("}")).toBe(true);
      expect(text.slice(text.trimEnd().length)).toMatch(/^ {0,7}$/);
      expect(bytes.byteLength).toBe(8 + n + 1);
    }
  });

  it('writes __metadata__ {"format":"pt"} by default, and the given metadata otherwise', () => {
    expect(headerText(writeSafetensors({}))).toBe('{"__metadata__":{"format":"pt"}}');
    expect(readSafetensors(writeSafetensors({}, {})).metadata).toEqual({});
    expect(readSafetensors(writeSafetensors({}, { format: "np", "a b": '"\n' })).metadata).toEqual({
      format: "np",
      "a b": '"\n',
    });
  });

  it("writes exactly the bytes of a hand-built file, and reads them back", () => {
    const header = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const padded = header + " ".repeat((8 - (header.length % 8)) % 8);
    const data = new Uint8Array([0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0]); // 1.5, -2 little-endian
    const hand = file(padded, data);
    expect(writeSafetensors({ a: { dtype: "F32", shape: [2], data: new Float32Array([1.5, -2]) } })).toEqual(hand);
    const a = readSafetensors(hand).tensors.get("a")!;
    expect(a).toEqual({ dtype: "F32", shape: [2], data });
  });

  it("reads the reference implementation's test vectors", () => {
    // safetensors/src/tensor.rs test_serialization: "attn.0" F32 [1, 2, 3], no metadata.
    const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    const values = new Float32Array([0, 1, 2, 3, 4, 5]);
    const parsed = readSafetensors(file(header, bytesOf(values)));
    expect(parsed.metadata).toEqual({});
    expect(parsed.tensors.get("attn.0")).toEqual({ dtype: "F32", shape: [1, 2, 3], data: bytesOf(values) });
    // test_empty: no tensors, header "{}" padded with spaces.
    const empty = readSafetensors(new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]));
    expect(empty.tensors.size).toBe(0);
  });

  it("matches the reference writer byte for byte (safetensors 0.8.0, numpy save)", () => {
    // Written by python: safetensors.numpy.save({...}, metadata={"format": "pt"}) with
    // b F32 [1.5,-2,3], a I64 [-1,2**40], z U8 arange(5), y I8 [-128,0,127], h F16 [1,-2,65504],
    // i I32 [-7], s F32 scalar 7, "é" F32 zeros (0,3), "😀" F32 [4], "\ue000" F32 [5].
    const ref = Uint8Array.from(
      atob(
        "UAIAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJmb3JtYXQiOiJwdCJ9LCJhIjp7ImR0eXBlIjoiSTY0Iiwic2hhcGUiOlsyXSwiZGF0YV9vZmZzZXRzIjpbMCwx" +
          "Nl19LCJiIjp7ImR0eXBlIjoiRjMyIiwic2hhcGUiOlszXSwiZGF0YV9vZmZzZXRzIjpbMTYsMjhdfSwicyI6eyJkdHlwZSI6IkYzMiIsInNoYXBlIjpbXSwi" +
          "ZGF0YV9vZmZzZXRzIjpbMjgsMzJdfSwiw6kiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6WzAsM10sImRhdGFfb2Zmc2V0cyI6WzMyLDMyXX0sIu6AgCI6eyJk" +
          "dHlwZSI6IkYzMiIsInNoYXBlIjpbMV0sImRhdGFfb2Zmc2V0cyI6WzMyLDM2XX0sIvCfmIAiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6WzFdLCJkYXRhX29m" +
          "ZnNldHMiOlszNiw0MF19LCJpIjp7ImR0eXBlIjoiSTMyIiwic2hhcGUiOlsxXSwiZGF0YV9vZmZzZXRzIjpbNDAsNDRdfSwiaCI6eyJkdHlwZSI6IkYxNiIs" +
          "InNoYXBlIjpbM10sImRhdGFfb2Zmc2V0cyI6WzQ0LDUwXX0sInkiOnsiZHR5cGUiOiJJOCIsInNoYXBlIjpbM10sImRhdGFfb2Zmc2V0cyI6WzUwLDUzXX0s" +
          "InoiOnsiZHR5cGUiOiJVOCIsInNoYXBlIjpbNV0sImRhdGFfb2Zmc2V0cyI6WzUzLDU4XX19ICAgICAg//////////8AAAAAAAEAAAAAwD8AAADAAABAQAAA" +
          "4EAAAKBAAACAQPn///8APADA/3uAAH8AAQIDBA==",
      ),
      (c) => c.charCodeAt(0),
    );
    const parsed = readSafetensors(ref);
    expect(parsed.tensors.get("é")).toEqual({ dtype: "F32", shape: [0, 3], data: new Uint8Array(0) });
    expect(parsed.tensors.get("s")!.shape).toEqual([]);
    expect(parsed.tensors.get("h")!.data).toEqual(bytesOf(new Uint16Array([0x3c00, 0xc000, 0x7bff])));
    expect(parsed.tensors.get("a")!.data).toEqual(bytesOf(new BigInt64Array([-1n, 2n ** 40n])));
    expect(writeSafetensors(parsed.tensors, parsed.metadata)).toEqual(ref);
  });

  it("returns tensor data as views into the input, also at an unaligned input offset", () => {
    const bytes = writeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
    const shifted = new Uint8Array(bytes.byteLength + 1).subarray(1);
    shifted.set(bytes);
    const w = readSafetensors(shifted).tensors.get("w")!;
    expect(w.data.buffer).toBe(shifted.buffer);
    expect(w.data).toEqual(bytesOf(new Float32Array([1, 2])));
  });

  it("allows zero-size tensors (begin == end) and scalars", () => {
    const bytes = writeSafetensors({
      empty: { dtype: "F32", shape: [3, 0], data: new Float32Array(0) },
      scalar: { dtype: "I32", shape: [], data: new Int32Array([9]) },
      also_empty: { dtype: "U8", shape: [0], data: new Uint8Array(0) },
    });
    const parsed = readSafetensors(bytes);
    expect(parsed.tensors.get("empty")!.data.byteLength).toBe(0);
    expect(parsed.tensors.get("scalar")!.data).toEqual(bytesOf(new Int32Array([9])));
  });

  it("treats any other key starting with __ as a tensor", () => {
    const parsed = readSafetensors(file(`{"__x__":${entry("U8", [1], [0, 1])}}`, 1));
    expect([...parsed.tensors.keys()]).toEqual(["__x__"]);
  });
});

describe("readSafetensorsHeader", () => {
  it("reads names, dtypes, shapes and offsets from the header alone", () => {
    const bytes = writeSafetensors({
      a: { dtype: "F32", shape: [2, 2], data: new Float32Array(4) },
      b: { dtype: "BF16", shape: [3], data: new Uint16Array(3) },
    });
    const full = readSafetensorsHeader(bytes);
    const prefix = bytes.subarray(0, full.dataStart);
    const header = readSafetensorsHeader(prefix);
    expect(header).toEqual(full);
    expect(header.metadata).toEqual({ format: "pt" });
    expect(header.tensors).toEqual(
      new Map([
        ["a", { dtype: "F32", shape: [2, 2], dataOffsets: [0, 16] }],
        ["b", { dtype: "BF16", shape: [3], dataOffsets: [16, 22] }],
      ]),
    );
    expect(header.dataStart + header.dataBytes).toBe(bytes.byteLength);
    expect(parseSafetensorsHeader(prefix)).toEqual({ ok: true, value: full });
    expect(parseSafetensors(prefix)).toMatchObject({ ok: false, error: { code: "out_of_bounds" } });
  });
});

describe("malformed files", () => {
  const u64max = 2n ** 64n - 1n;
  const f32x2 = entry("F32", [2], [0, 8]);
  const cases: [SafetensorsErrorCode, string, Uint8Array, number?][] = [
    ["too_short", "empty input", new Uint8Array(0)],
    ["too_short", "7 bytes", new Uint8Array(7)],
    ["header_too_large", "over a small maxHeaderBytes", file("{}      "), 4],
    ["header_too_large", "over the default 100 MB cap", file("{}", 0, 100_000_001n)],
    ["header_too_large", "u64 max", file("{}", 0, u64max)],
    ["header_out_of_bounds", "header length beyond the file", file("{}", 0, 100n)],
    ["header_not_utf8", "invalid byte 0xff", file(new Uint8Array([0x7b, 0xff, 0x7d]))],
    ["header_not_utf8", "UTF-8 encoded surrogate", file(new Uint8Array([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]))],
    ["header_not_json", "truncated JSON", file('{"a":')],
    ["header_not_json", "empty header", file("")],
    ["header_not_json", "byte order mark", file("\ufeff{}")],
    ["header_not_json", "NUL padding", file("{}\0\0")],
    ["header_not_object", "array header", file("[]")],
    ["header_not_object", "null header", file("null")],
    ["header_bad_start", "leading space", file(" {}")],
    ["header_bad_start", "leading newline", file("\n{}")],
    ["duplicate_tensor", "same name twice", file(`{"a":${f32x2},"a":${entry("F32", [2], [8, 16])}}`, 16)],
    ["duplicate_tensor", "same name, escaped differently", file(`{"a":${f32x2},"\\u0061":${f32x2}}`, 8)],
    ["duplicate_tensor", "__metadata__ twice", file('{"__metadata__":{},"__metadata__":{}}')],
    ["metadata_not_object", "array metadata", file('{"__metadata__":[]}')],
    ["metadata_not_object", "string metadata", file('{"__metadata__":"pt"}')],
    ["metadata_not_object", "null metadata", file('{"__metadata__":null}')],
    ["metadata_value_not_string", "number value", file('{"__metadata__":{"format":1}}')],
    ["metadata_value_not_string", "a tensor entry under __metadata__", file(`{"__metadata__":${f32x2}}`, 8)],
    ["metadata_duplicate_key", "metadata key twice", file('{"__metadata__":{"format":"pt","format":"np"}}')],
    ["bad_tensor_entry", "entry is an array", file('{"a":[]}')],
    ["bad_tensor_entry", "entry is a number", file('{"a":1}')],
    ["bad_tensor_entry", "missing data_offsets", file('{"a":{"dtype":"U8","shape":[1]}}', 1)],
    ["bad_tensor_entry", "unknown field", file('{"a":{"dtype":"U8","shape":[1],"offsets":[0,1],"data_offsets":[0,1]}}', 1)],
    ["bad_tensor_entry", "field twice", file('{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1)],
    ["unknown_dtype", "F64", file(`{"a":${entry("F64", [1], [0, 8])}}`, 8)],
    ["unknown_dtype", "lower case", file(`{"a":${entry("f32", [1], [0, 4])}}`, 4)],
    ["unknown_dtype", "not a string", file('{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}', 4)],
    ["bad_shape", "negative dimension", file(`{"a":${entry("U8", [-1], [0, 0])}}`)],
    ["bad_shape", "fractional dimension", file(`{"a":${entry("U8", [1.5], [0, 1])}}`, 1)],
    ["bad_shape", "string dimension", file(`{"a":${entry("U8", ["2"], [0, 2])}}`, 2)],
    ["bad_shape", "not an array", file(`{"a":${entry("U8", 2, [0, 2])}}`, 2)],
    ["bad_shape", "dimension over 2^53", file('{"a":{"dtype":"U8","shape":[9007199254740993],"data_offsets":[0,1]}}', 1)],
    ["bad_offsets", "reversed", file(`{"a":${entry("F32", [2], [8, 0])}}`, 8)],
    ["bad_offsets", "one offset", file(`{"a":${entry("F32", [2], [8])}}`, 8)],
    ["bad_offsets", "three offsets", file(`{"a":${entry("F32", [2], [0, 8, 8])}}`, 8)],
    ["bad_offsets", "negative begin", file(`{"a":${entry("F32", [2], [-1, 7])}}`, 8)],
    ["bad_offsets", "fractional end", file(`{"a":${entry("F32", [2], [0, 8.5])}}`, 8)],
    ["size_mismatch", "F32 [2] in 4 bytes", file(`{"a":${entry("F32", [2], [0, 4])}}`, 4)],
    ["size_mismatch", "zero-size shape with data", file(`{"a":${entry("F32", [0], [0, 4])}}`, 4)],
    ["offsets_gap", "first tensor not at 0", file(`{"a":${entry("F32", [2], [4, 12])}}`, 12)],
    ["offsets_gap", "gap between tensors", file(`{"a":${f32x2},"b":${entry("U8", [1], [9, 10])}}`, 10)],
    ["offsets_overlap", "overlapping tensors", file(`{"a":${f32x2},"b":${entry("F32", [2], [4, 12])}}`, 12)],
    ["offsets_overlap", "same offsets twice", file(`{"a":${f32x2},"b":${f32x2}}`, 8)],
    ["out_of_bounds", "data shorter than the tensors", file(`{"a":${f32x2}}`, 4)],
    ["out_of_bounds", "no data at all", file(`{"a":${f32x2}}`)],
    ["trailing_bytes", "data longer than the tensors", file(`{"a":${f32x2}}`, 12)],
    ["trailing_bytes", "bytes after an empty header", file("{}", 1)],
  ];

  it.each(cases)("%s: %s", (code, _what, bytes, maxHeaderBytes) => {
    const opts = maxHeaderBytes === undefined ? undefined : { maxHeaderBytes };
    const result = parseSafetensors(bytes, opts);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error).toBeInstanceOf(SafetensorsError);
    expect(result.error).toBeInstanceOf(ProtocolError);
    expect(result.error.code).toBe(code);
    expect(() => readSafetensors(bytes, opts)).toThrow(result.error);
  });

  it("has a case for every reader error code", () => {
    const all: SafetensorsErrorCode[] = [
      "too_short",
      "header_too_large",
      "header_out_of_bounds",
      "header_not_utf8",
      "header_not_json",
      "header_not_object",
      "header_bad_start",
      "duplicate_tensor",
      "metadata_not_object",
      "metadata_value_not_string",
      "metadata_duplicate_key",
      "bad_tensor_entry",
      "unknown_dtype",
      "bad_shape",
      "bad_offsets",
      "size_mismatch",
      "offsets_gap",
      "offsets_overlap",
      "out_of_bounds",
      "trailing_bytes",
    ];
    expect(new Set(cases.map(([code]) => code))).toEqual(new Set(all));
  });

  it("accepts a header exactly at maxHeaderBytes", () => {
    expect(parseSafetensors(file("{}      "), { maxHeaderBytes: 8 }).ok).toBe(true);
  });

  it("names the tensor and the numbers in its messages", () => {
    const bytes = file(`{"model.embed_tokens.weight":${entry("F32", [4, 8], [100, 200])}}`, 200);
    expect(() => readSafetensors(bytes)).toThrow(
      'tensor "model.embed_tokens.weight": data spans 100..200 (100 bytes) but F32 [4, 8] needs 128 bytes',
    );
    const gap = file(`{"a":${f32x2},"b":${entry("U8", [1], [9, 10])}}`, 10);
    expect(() => readSafetensors(gap)).toThrow('tensor "b" starts at byte 9 but the previous tensor "a" ends at 8 (gap of 1 bytes)');
  });
});

describe("writer input validation", () => {
  const ok: TensorInput = { dtype: "F32", shape: [2], data: new Float32Array(2) };
  const cases: [string, Record<string, TensorInput>, Record<string, string>?][] = [
    ["empty name", { "": ok }],
    ["name __metadata__", { __metadata__: ok }],
    ["unknown dtype", { a: { ...ok, dtype: "F64" as DType } }],
    ["byte length not matching the shape", { a: { ...ok, shape: [3] } }],
    ["F32 data for a BF16 shape", { a: { ...ok, dtype: "BF16" } }],
    ["negative dimension", { a: { ...ok, shape: [-2] } }],
    ["fractional dimension", { a: { ...ok, shape: [0.5, 4] } }],
    ["data not a typed array", { a: { ...ok, data: [0, 0] as unknown as Float32Array } }],
    ["non-string metadata value", { a: ok }, { format: 1 as unknown as string }],
  ];

  it.each(cases)("rejects %s", (_what, tensors, metadata) => {
    expect(() => writeSafetensors(tensors, metadata)).toThrow(
      expect.objectContaining({ name: "SafetensorsError", code: "writer_bad_input" }),
    );
  });
});
