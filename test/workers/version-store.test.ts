// Versions served from R2 once read (issue 20): the first read of a version goes to the aggregator and
// keeps a copy; later reads, a member's signed ones too, come from R2 without asking it. A deleted
// federation's copies go with it, and a new federation of the same id never gets the old one's bytes.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { federationConfig } from "../fixtures/federation.ts";
import { api, signed, viewerApi } from "./coordinator-api.ts";

/** Reads a version until it is served from R2 (the copy is written after the first answer), returning each answer's source and bytes. */
async function readUntilKept(read: () => Promise<Response>): Promise<{ source: string; bytes: Uint8Array }[]> {
  const seen: { source: string; bytes: Uint8Array }[] = [];
  for (let i = 0; i < 50; i++) {
    const res = await read();
    expect(res.status).toBe(200);
    seen.push({ source: res.headers.get("x-fedflare-source")!, bytes: new Uint8Array(await res.arrayBuffer()) });
    if (seen.at(-1)!.source === "r2") return seen;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the version was never served from R2");
}
const kept = async (id: string) => (await env.VERSIONS!.list({ prefix: `versions/${id}/` })).objects.map((o) => o.key);

describe("versions kept in R2", () => {
  it("serves a version from R2 once read, drops the copies with the federation, and never serves them to a new one", async () => {
    const create = (seed: number) =>
      api("/federations", {
        method: "POST",
        body: JSON.stringify(federationConfig("kept", { clients: ["c1", "c2"], clientsPerRound: 2, minClients: 1, seed })),
      });
    expect((await create(1)).status).toBe(201);
    const first = await readUntilKept(() => viewerApi("/federations/kept/versions/0"));
    expect(first[0]!.source).toBe("aggregator");
    expect(first.at(-1)!.bytes).toEqual(first[0]!.bytes);
    const { createdAt } = await (await api("/federations/kept")).json<{ createdAt: number }>();
    expect(await kept("kept")).toEqual([`versions/kept/${createdAt}/0`]);
    // A member's signed read, and the PEFT file name, come from the same copy.
    const member = await signed("/federations/kept/versions/0/adapter_model.safetensors", "c1");
    expect([member.headers.get("x-fedflare-source"), new Uint8Array(await member.arrayBuffer())]).toEqual(["r2", first[0]!.bytes]);
    // A version that does not exist is still the aggregator's 404, and nothing is kept for it.
    expect((await viewerApi("/federations/kept/versions/7")).status).toBe(404);
    expect((await api("/federations/kept", { method: "DELETE" })).status).toBe(200);
    expect(await kept("kept")).toEqual([]);
    // The same id again, another seed: its own version 0, read from the aggregator first.
    expect((await create(2)).status).toBe(201);
    const again = await readUntilKept(() => viewerApi("/federations/kept/versions/0"));
    expect(again[0]!.source).toBe("aggregator");
    expect(again[0]!.bytes).not.toEqual(first[0]!.bytes);
    expect(again.at(-1)!.bytes).toEqual(again[0]!.bytes);
  });
});
