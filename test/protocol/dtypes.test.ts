import { describe, it, expect } from "vitest";
import { DTYPE_BYTES, float32ToBF16, float32ToF16, isDType, toFloat32 } from "../../src/protocol/dtypes.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";

const halves = (...bits: number[]) => new Uint8Array(new Uint16Array(bits).buffer);
const f32 = (...values: number[]) => new Float32Array(values);
/** The float32 whose bit pattern is `bits`. */
const fromBits = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;
const bitsOf = (x: number) => new Uint32Array(f32(x).buffer)[0]!;
const ALL_16_BIT = Uint16Array.from({ length: 0x10000 }, (_, i) => i);

/** Independent F16 decoding by arithmetic, for comparison. */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return exp === 0 ? sign * mant * 2 ** -24 : sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

describe("DType", () => {
  it("has the safetensors names and sizes", () => {
    expect(DTYPE_BYTES).toEqual({ F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, I32: 4, U32: 4, I64: 8 });
    expect(isDType("BF16")).toBe(true);
    for (const x of ["F64", "f32", "toString", "", 4, null, undefined]) expect(isDType(x)).toBe(false);
  });
});

describe("toFloat32", () => {
  it("decodes known F16 bit patterns", () => {
    const out = toFloat32("F16", halves(0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x8000, 0x3555));
    expect([...out]).toEqual([1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, -0, 0.333251953125]);
    expect(Object.is(out[8], -0)).toBe(true);
    expect(toFloat32("F16", halves(0x7e00, 0xfc01))[0]).toBeNaN();
  });

  it("decodes every F16 bit pattern exactly, NaN payloads included", () => {
    const out = toFloat32("F16", new Uint8Array(ALL_16_BIT.buffer));
    const bits = new Uint32Array(out.buffer);
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) {
        expect(bits[h]).toBe((((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0);
      } else if (!Object.is(out[h], f16Value(h))) {
        expect.fail(`F16 0x${h.toString(16)} decoded to ${out[h]}, expected ${f16Value(h)}`);
      }
    }
  });

  it("decodes known BF16 bit patterns", () => {
    const out = toFloat32("BF16", halves(0x3f80, 0xc000, 0x7f80, 0xff80, 0x0001, 0x7f7f));
    expect([...out]).toEqual([1, -2, Infinity, -Infinity, 2 ** -133, fromBits(0x7f7f0000)]);
    expect(toFloat32("BF16", halves(0x7fc0))[0]).toBeNaN();
  });

  it("decodes every BF16 bit pattern to the float32 with those top bits", () => {
    const bits = new Uint32Array(toFloat32("BF16", new Uint8Array(ALL_16_BIT.buffer)).buffer);
    for (let h = 0; h < 0x10000; h++) if (bits[h] !== (h << 16) >>> 0) expect.fail(`BF16 0x${h.toString(16)}`);
  });

  it("views aligned F32 bytes and copies unaligned ones", () => {
    const aligned = new Uint8Array(f32(1.5, -2).buffer);
    const view = toFloat32("F32", aligned);
    expect([...view]).toEqual([1.5, -2]);
    expect(view.buffer).toBe(aligned.buffer);

    const unaligned = new Uint8Array(9).subarray(1);
    unaligned.set(aligned);
    const copy = toFloat32("F32", unaligned);
    expect([...copy]).toEqual([1.5, -2]);
    expect(copy.buffer).not.toBe(unaligned.buffer);
  });

  it("decodes 16-bit values at an odd byte offset", () => {
    const bytes = new Uint8Array(5).subarray(1);
    bytes.set(halves(0x3c00, 0xc000));
    expect([...toFloat32("F16", bytes)]).toEqual([1, -2]);
    expect([...toFloat32("BF16", bytes.subarray(2))]).toEqual([-2]);
  });

  it("rejects a byte length that is not a whole number of elements", () => {
    expect(() => toFloat32("F16", new Uint8Array(3))).toThrow(expect.objectContaining({ code: "bad_byte_length" }));
    expect(() => toFloat32("F32", new Uint8Array(6))).toThrow(ProtocolError);
  });
});

describe("float32ToF16", () => {
  const enc = (x: number) => float32ToF16(f32(x))[0]!;

  it("encodes known values", () => {
    expect([...float32ToF16(f32(1, -2, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity, 0, -0))]).toEqual([
      0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x0000, 0x8000,
    ]);
  });

  it("rounds to nearest, ties to even, at the edges", () => {
    expect(enc(1 + 2 ** -11)).toBe(0x3c00); // tie between 0x3c00 (even) and 0x3c01
    expect(enc(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie between 0x3c01 and 0x3c02 (even)
    expect(enc(65519)).toBe(0x7bff);
    expect(enc(65520)).toBe(0x7c00); // tie between 65504 (odd) and infinity (even)
    expect(enc(1e10)).toBe(0x7c00);
    expect(enc(-1e10)).toBe(0xfc00);
    expect(enc(2 ** -25)).toBe(0x0000); // tie between 0 (even) and the smallest subnormal
    expect(enc(fromBits(bitsOf(2 ** -25) + 1))).toBe(0x0001);
    expect(enc(3 * 2 ** -25)).toBe(0x0002); // tie between 0x0001 and 0x0002 (even)
    expect(enc(2 ** -14 - 2 ** -25)).toBe(0x0400); // tie: largest subnormal (odd) vs smallest normal
    expect(enc(1e-10)).toBe(0x0000);
    expect(enc(-1e-10)).toBe(0x8000);
  });

  it("round-trips every F16 value and rounds every midpoint and its neighbours correctly", () => {
    const values = toFloat32("F16", new Uint8Array(ALL_16_BIT.buffer));
    const back = float32ToF16(values);
    for (let h = 0; h < 0x10000; h++) {
      const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (!nan && back[h] !== h) expect.fail(`F16 0x${h.toString(16)} re-encoded as 0x${back[h]!.toString(16)}`);
    }
    for (const sign of [0, 0x8000]) {
      for (let h = 0; h < 0x7bff; h++) {
        const mid = (f16Value(h | sign) + f16Value((h + 1) | sign)) / 2; // exact in float32
        const even = h % 2 === 0 ? h : h + 1;
        const got = float32ToF16(f32(mid, fromBits(bitsOf(mid) - 1), fromBits(bitsOf(mid) + 1)));
        // Neighbours by bit pattern: for negative values "- 1" moves towards zero, too.
        if (got[0] !== (even | sign) || got[1] !== (h | sign) || got[2] !== ((h + 1) | sign)) {
          expect.fail(`midpoint after F16 0x${(h | sign).toString(16)}: got ${[...got].map((x) => x.toString(16))}`);
        }
      }
    }
  });

  it("keeps NaN a NaN, with its sign", () => {
    const out = float32ToF16(f32(NaN, fromBits(0x7f800001), fromBits(0xffc00000)));
    for (const h of out) expect(h & 0x7c00).toBe(0x7c00);
    for (const h of out) expect(h & 0x3ff).not.toBe(0);
    expect(out[2]! & 0x8000).toBe(0x8000);
  });
});

describe("float32ToBF16", () => {
  it("encodes known values", () => {
    expect([...float32ToBF16(f32(1, -2, Infinity, -Infinity, 0, -0, 2 ** -133))]).toEqual([
      0x3f80, 0xc000, 0x7f80, 0xff80, 0x0000, 0x8000, 0x0001,
    ]);
  });

  it("rounds to nearest, ties to even", () => {
    const enc = (bits: number) => float32ToBF16(new Float32Array(new Uint32Array([bits]).buffer))[0];
    expect(enc(0x3f808000)).toBe(0x3f80); // tie, 0x3f80 even
    expect(enc(0x3f818000)).toBe(0x3f82); // tie, 0x3f82 even
    expect(enc(0x3f808001)).toBe(0x3f81);
    expect(enc(0x3f807fff)).toBe(0x3f80);
    expect(enc(0x7f7fffff)).toBe(0x7f80); // largest float32 rounds up to infinity
    expect(enc(0x7f7f7fff)).toBe(0x7f7f);
    expect(enc(0xbf808000)).toBe(0xbf80);
  });

  it("round-trips every BF16 value", () => {
    const back = float32ToBF16(toFloat32("BF16", new Uint8Array(ALL_16_BIT.buffer)));
    for (let h = 0; h < 0x10000; h++) {
      const nan = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (!nan && back[h] !== h) expect.fail(`BF16 0x${h.toString(16)} re-encoded as 0x${back[h]!.toString(16)}`);
      if (nan && back[h] !== (h | 0x40)) expect.fail(`BF16 NaN 0x${h.toString(16)} lost its payload`);
    }
  });

  it("keeps NaN a NaN even when only low payload bits are set", () => {
    const out = float32ToBF16(new Float32Array(new Uint32Array([0x7f800001, 0xff800001, 0x7fc00000]).buffer));
    expect([...out]).toEqual([0x7fc0, 0xffc0, 0x7fc0]);
  });
});
