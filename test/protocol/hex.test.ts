import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { sha256, sha256Hex } from "../../src/protocol/hex.ts";

describe("SHA-256", () => {
  it("hashes bytes and a string's UTF-8 as node:crypto does, in lowercase hex", async () => {
    const text = "fedflare ✓ 0123";
    const want = createHash("sha256").update(text, "utf8").digest("hex");
    expect(await sha256Hex(text)).toBe(want);
    expect(await sha256Hex(new TextEncoder().encode(text))).toBe(want);
    expect(Buffer.from(await sha256(text)).toString("hex")).toBe(want);
    expect(await sha256Hex(new Uint8Array())).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("hashes a view of part of a buffer, and a view of a SharedArrayBuffer", async () => {
    const bytes = new TextEncoder().encode("..abc..");
    const want = createHash("sha256").update("abc").digest("hex");
    expect(await sha256Hex(bytes.subarray(2, 5))).toBe(want);
    const shared = new Uint8Array(new SharedArrayBuffer(3));
    shared.set(bytes.subarray(2, 5));
    expect(await sha256Hex(shared)).toBe(want);
  });
});
