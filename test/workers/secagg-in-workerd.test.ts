// SecAgg+'s cryptography in workerd's WebCrypto (X25519, HKDF, AES-CTR, AES-GCM) and the Shamir package
// bundled for a Worker: a round of 12 clients on a sparse graph with dropouts sums exactly, as in Node.
import { describe, expect, it } from "vitest";
import { simulate } from "../fixtures/secagg.ts";

describe("SecAgg+ in workerd", () => {
  it("sums 12 clients (degree 6) with a dropout before the masked input and one before unmasking", async () => {
    const r = await simulate(12, { degree: 6, threshold: 4, drops: { beforeInput: ["client-004"], beforeUnmask: ["client-007"] } });
    expect(r.survivors.size).toBe(11);
    expect(r.sum).toEqual(r.want);
  });
});
