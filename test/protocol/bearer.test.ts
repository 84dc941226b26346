import { describe, expect, it } from "vitest";
import { bearer, bearerToken } from "../../src/protocol/bearer.ts";
import { malformedBearers } from "../fixtures/malformed-bearer.ts";

describe("bearer tokens", () => {
  it("builds the header from a token, and none without one", () => {
    expect(bearer("t0k3n")).toEqual({ authorization: "Bearer t0k3n" });
    expect(bearer(undefined)).toEqual({});
    expect(bearer("")).toEqual({});
  });

  it("parses back what it builds, up to 512 visible ASCII characters", () => {
    for (const token of ["t", "a.b-c_d~e+f/g=", "!~", "x".repeat(512)]) expect(bearerToken(bearer(token).authorization)).toBe(token);
  });

  it("refuses every other shape: no token, two spaces, a control character, over 512 characters, another scheme", () => {
    for (const header of [
      undefined,
      "",
      ...malformedBearers("the-token-0123456789"),
      "Bearer tok\x01en",
      "Bearer tok\x7fen",
      "Bearer tok en",
      "Bearer token ",
      "Basic dXNlcjpwYXNz",
      "bearer token",
      "Bearer tök",
    ])
      expect(bearerToken(header), JSON.stringify(header)).toBeNull();
  });
});
