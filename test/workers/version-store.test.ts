// Versions served from R2 once read (issue 20): the first read of a version (or of a method's view of it)
// goes to the aggregator and keeps a copy; later reads, a member's signed ones too, come from R2 without asking it. A deleted
// federation's copies go with it, and a new federation of the same id never gets the old one's bytes.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { float32ToF16, toFloat32 } from "../../src/protocol/dtypes.ts";
import { readSafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
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
    // A view of it (LoRA's rank view) is kept beside it, by its name and parameters, and served from there.
    const view = await readUntilKept(() => signed("/federations/kept/versions/0/rank?r=1", "c1"));
    expect(view[0]!.source).toBe("aggregator");
    expect(view.at(-1)!.bytes).toEqual(view[0]!.bytes);
    // Rank 1 of the version's 4: a quarter of its values.
    expect(readSafetensorsHeader(view[0]!.bytes).dataBytes * 4).toBe(readSafetensorsHeader(first[0]!.bytes).dataBytes);
    expect((await kept("kept")).sort()).toEqual([`versions/kept/${createdAt}/0`, `versions/kept/${createdAt}/0.rank.r-1`]);
    // A version that does not exist is still the aggregator's 404, and nothing is kept for it.
    expect((await viewerApi("/federations/kept/versions/7")).status).toBe(404);
    expect((await viewerApi("/federations/kept/versions/7/rank?r=1")).status).toBe(404);
    expect((await api("/federations/kept", { method: "DELETE" })).status).toBe(200);
    expect(await kept("kept")).toEqual([]);
    // The same id again, another seed: its own version 0, read from the aggregator first.
    expect((await create(2)).status).toBe(201);
    const again = await readUntilKept(() => viewerApi("/federations/kept/versions/0"));
    expect(again[0]!.source).toBe("aggregator");
    expect(again[0]!.bytes).not.toEqual(first[0]!.bytes);
    expect(again.at(-1)!.bytes).toEqual(again[0]!.bytes);
  });

  it("serves a version as F16 (half the bytes, each value rounded to nearest), kept in R2 beside the F32 one", async () => {
    const body = JSON.stringify(federationConfig("half", { clients: ["c1", "c2"], clientsPerRound: 2, minClients: 1 }));
    expect((await api("/federations", { method: "POST", body })).status).toBe(201);
    const f32 = decodeTensorFile(new Uint8Array(await (await viewerApi("/federations/half/versions/0")).arrayBuffer()), "v0");
    const reads = await readUntilKept(() => signed("/federations/half/versions/0?dtype=F16", "c1"));
    expect(reads[0]!.source).toBe("aggregator");
    expect(reads.at(-1)!.bytes).toEqual(reads[0]!.bytes);
    const f16 = decodeTensorFile(reads[0]!.bytes, "v0 as F16");
    const values = [...f32.tensors.values()].reduce((n, t) => n + t.length, 0);
    expect(readSafetensorsHeader(reads[0]!.bytes).dataBytes).toBe(2 * values);
    for (const [name, t] of f32.tensors) expect(f16.tensors.get(name)).toEqual(toFloat32("F16", new Uint8Array(float32ToF16(t).buffer)));
    const { createdAt } = await (await api("/federations/half")).json<{ createdAt: number }>();
    expect((await kept("half")).sort()).toEqual([`versions/half/${createdAt}/0`, `versions/half/${createdAt}/0.F16`]);
    const bad = await viewerApi("/federations/half/versions/0?dtype=F8");
    expect([bad.status, ((await bad.json()) as { error: { message: string } }).error.message]).toEqual([
      400,
      'dtype is F32, F16 or BF16, not "F8"',
    ]);
  });
});
