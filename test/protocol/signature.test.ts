import { describe, expect, it } from "vitest";
import {
  assertBody,
  bodyDigest,
  deriveClientSecret,
  HEADERS,
  OPERATOR_ID,
  parseSignedHeaders,
  signRequest,
  verifyRequest,
  verifySignature,
} from "../../src/protocol/signature.ts";

const master = "operator-master-key";
const body = new TextEncoder().encode("tensor bytes");
const path = "/federations/f1/rounds/1/updates/alice";

async function signed(overrides: Partial<Record<string, string>> = {}, at = Date.now()) {
  const secret = await deriveClientSecret(master, "alice");
  const h = await signRequest(secret, "alice", "PUT", path, body, at);
  return new Headers({ ...h, ...overrides } as Record<string, string>);
}

describe("request signatures", () => {
  it("derives a distinct, stable secret per client", async () => {
    const a = await deriveClientSecret(master, "alice");
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(await deriveClientSecret(master, "alice")).toBe(a);
    expect(await deriveClientSecret(master, "bob")).not.toBe(a);
    expect(await deriveClientSecret("other", "alice")).not.toBe(a);
  });

  it("verifies a request signed with the client's secret", async () => {
    const v = await verifyRequest(master, await signed(), "PUT", path, body);
    expect(v.clientId).toBe("alice");
    expect(v.nonce).toMatch(/^[0-9a-f]{32}$/);
  });

  it.each([
    [
      "a changed body",
      async () => verifyRequest(master, await signed(), "PUT", path, new TextEncoder().encode("tensor bytez")),
      "body_mismatch",
    ],
    ["another path", async () => verifyRequest(master, await signed(), "PUT", path.replace("/1/", "/2/"), body), "signature_invalid"],
    ["another method", async () => verifyRequest(master, await signed(), "POST", path, body), "signature_invalid"],
    [
      "another client's name",
      async () => verifyRequest(master, await signed({ [HEADERS.client]: "bob" }), "PUT", path, body),
      "signature_invalid",
    ],
    ["a wrong master key", async () => verifyRequest("wrong", await signed(), "PUT", path, body), "signature_invalid"],
    [
      "a garbled signature",
      async () => verifyRequest(master, await signed({ [HEADERS.signature]: "zz" }), "PUT", path, body),
      "signature_invalid",
    ],
    [
      "a timestamp ten minutes old",
      async () => verifyRequest(master, await signed({}, Date.now() - 600_000), "PUT", path, body),
      "signature_expired",
    ],
    [
      "no signature header",
      async () => {
        const h = await signed();
        h.delete(HEADERS.signature);
        return verifyRequest(master, h, "PUT", path, body);
      },
      "signature_missing",
    ],
    [
      "a client id of the wrong syntax",
      async () => verifyRequest(master, await signed({ [HEADERS.client]: "../alice" }), "PUT", path, body),
      "signature_invalid",
    ],
    [
      "a nonce that is not hex",
      async () => verifyRequest(master, await signed({ [HEADERS.nonce]: "not-a-nonce-at-all" }), "PUT", path, body),
      "signature_invalid",
    ],
  ])("refuses %s", async (_, run, code) => {
    await expect(run()).rejects.toMatchObject({ name: "SignatureError", code });
  });

  it("binds the signer's id: a client's own signature relabelled as the operator's does not verify under the same secret", async () => {
    const secret = await deriveClientSecret(master, "alice");
    const own = await signRequest(secret, "alice", "POST", "/tasks", body);
    const relabelled = parseSignedHeaders(new Headers({ ...own, [HEADERS.client]: OPERATOR_ID }));
    await expect(verifySignature(secret, relabelled, "POST", "/tasks")).rejects.toMatchObject({ code: "signature_invalid" });
    const operator = parseSignedHeaders(new Headers({ ...(await signRequest(secret, OPERATOR_ID, "POST", "/tasks", body)) }));
    expect((await verifySignature(secret, operator, "POST", "/tasks")).clientId).toBe(OPERATOR_ID);
  });

  it("covers the query string of a signed read", async () => {
    const secret = await deriveClientSecret(master, "alice");
    const read = parseSignedHeaders(
      new Headers({ ...(await signRequest(secret, "alice", "GET", "/federations/f/versions/3/seeds?since=1")) }),
    );
    expect((await verifySignature(secret, read, "GET", "/federations/f/versions/3/seeds?since=1")).clientId).toBe("alice");
    await expect(verifySignature(secret, read, "GET", "/federations/f/versions/3/seeds?since=0")).rejects.toMatchObject({
      code: "signature_invalid",
    });
  });

  it("checks the signature from the headers alone, then the body against the digest they sign", async () => {
    const secret = await deriveClientSecret(master, "alice");
    const h = parseSignedHeaders(new Headers({ ...(await signRequest(secret, "alice", "PUT", path, body)) }));
    expect(h.contentSha256).toBe(await bodyDigest(body));
    expect((await verifySignature(secret, h, "PUT", path)).clientId).toBe("alice");
    const other = await bodyDigest(new TextEncoder().encode("other bytes"));
    expect(() => assertBody(h, other)).toThrow(expect.objectContaining({ code: "body_mismatch" }));
    expect(() => assertBody(h, h.contentSha256)).not.toThrow();
    const forged = parseSignedHeaders(
      new Headers({ ...(await signRequest(secret, "alice", "PUT", path, body)), [HEADERS.contentSha256]: "0".repeat(64) }),
    );
    await expect(verifySignature(secret, forged, "PUT", path)).rejects.toMatchObject({ code: "signature_invalid" });
  });
});
