// A client written from docs/PROTOCOL.md alone (issue 20): its signing, its safetensors reading and
// writing and its round are coded here with WebCrypto and nothing of the project's client code, and two
// such clients take part in a federation in workerd, whose version is then FedAvg of what they sent.
// Only the operator's side (creating the federation, opening the round) and the transport are the tests'.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { federationConfig } from "../fixtures/federation.ts";
import { api, MASTER_KEY } from "./coordinator-api.ts";

const utf8 = new TextEncoder();
const hex = (bytes: ArrayBuffer | Uint8Array) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (bytes: Uint8Array) => hex(await crypto.subtle.digest("SHA-256", bytes));
async function hmac(key: string, message: string): Promise<string> {
  const k = await crypto.subtle.importKey("raw", utf8.encode(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", k, utf8.encode(message)));
}

/** "Credentials": the secret the operator derives and hands to a client. */
const secretOf = (client: string) => hmac(MASTER_KEY, `fedflare-client:${client}`);

/** "Signing a request", steps 1-6. */
async function send(
  client: string,
  secret: string,
  method: "GET" | "PUT",
  path: string,
  body: Uint8Array<ArrayBuffer> = new Uint8Array(),
  extra = {},
) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const bodySha256 = await sha256(body);
  const signature = await hmac(secret, [method, path, client, timestamp, nonce, bodySha256].join("\n"));
  const headers = {
    "x-fedflare-client": client,
    "x-fedflare-timestamp": timestamp,
    "x-fedflare-nonce": nonce,
    "x-fedflare-signature": signature,
    "x-fedflare-content-sha256": bodySha256,
    ...extra,
  };
  return exports.default.fetch(`https://coordinator.example${path}`, { method, headers, ...(method === "PUT" ? { body } : {}) });
}

/** "safetensors, in short": F32 tensors only, as this client needs. */
function readSafetensors(bytes: Uint8Array): Map<string, { shape: number[]; values: Float32Array }> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    expect(t.dtype).toBe("F32");
    const data = bytes.slice(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
    out.set(name, { shape: t.shape, values: new Float32Array(data.buffer) });
  }
  return out;
}
function writeSafetensors(
  tensors: Map<string, { shape: number[]; values: Float32Array }>,
  metadata: Record<string, string>,
): Uint8Array<ArrayBuffer> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + 4 * t.values.length] };
    offset += 4 * t.values.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(utf8.encode(json), 8);
  let at = 8 + json.length;
  for (const t of tensors.values()) {
    out.set(new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength), at);
    at += t.values.byteLength;
  }
  return out;
}

/** "A round, as a client", steps 1-5: returns the upload's answer, its replay's, and what it sent. */
async function takePart(fed: string, client: string, change: number, examples: number) {
  const secret = await secretOf(client);
  const get = async (path: string) => {
    const res = await send(client, secret, "GET", path);
    expect(res.status, await res.clone().text()).toBe(200);
    return res;
  };
  const { openRound } = await (await get(`/federations/${fed}`)).json<{ openRound: number | null }>();
  expect(openRound).not.toBeNull();
  const round = await (await get(`/federations/${fed}/rounds/${openRound}`)).json<{
    status: string;
    sampled: string[];
    baseVersion: number;
    task: { local: { steps: number } };
  }>();
  expect([round.status, round.sampled]).toEqual(["open", [client]]);
  const version = readSafetensors(new Uint8Array(await (await get(`/federations/${fed}/versions/${round.baseVersion}`)).arrayBuffer()));
  // "Train": every value moves by `change`; the update is the delta.
  const delta = new Map([...version].map(([name, t]) => [name, { shape: t.shape, values: t.values.map(() => change) }]));
  const body = writeSafetensors(delta, { num_examples: String(examples), metrics: '{"train_loss":1.5}', format: "pt" });
  const path = `/federations/${fed}/rounds/${openRound}/updates/${client}`;
  const key = { "idempotency-key": `${fed}/${openRound}/${client}` };
  const first = await send(client, secret, "PUT", path, body, key);
  const again = await send(client, secret, "PUT", path, body, key);
  return {
    version,
    first: await first.json<Record<string, unknown>>(),
    status: first.status,
    again: await again.json<Record<string, unknown>>(),
  };
}

describe("a client written from docs/PROTOCOL.md", () => {
  it("takes part in a round; two such clients' uploads make the version their example-weighted mean", async () => {
    const fed = "documented";
    const create = await api("/federations", {
      method: "POST",
      body: JSON.stringify(federationConfig(fed, { clients: ["doc-a", "doc-b"], clientsPerRound: 2, minClients: 2 })),
    });
    expect(create.status, await create.clone().text()).toBe(201);
    expect((await api(`/federations/${fed}/rounds`, { method: "POST" })).status).toBe(201);
    const a = await takePart(fed, "doc-a", 0.5, 10);
    expect(a.status).toBe(200);
    expect(a.first).toMatchObject({
      federationId: fed,
      round: 1,
      clientId: "doc-a",
      numExamples: 10,
      replayed: false,
      roundStatus: "open",
    });
    expect(a.again).toMatchObject({ clientId: "doc-a", replayed: true });
    const b = await takePart(fed, "doc-b", -0.25, 30);
    expect(b.first).toMatchObject({ clientId: "doc-b", numExamples: 30, replayed: false, roundStatus: "closed" });
    // Step 6: version 1 is version 0 plus (10 · 0.5 + 30 · −0.25) / 40 = −0.0625 everywhere.
    const secret = await secretOf("doc-a");
    const after = readSafetensors(
      new Uint8Array(await (await send("doc-a", secret, "GET", `/federations/${fed}/versions/1`)).arrayBuffer()),
    );
    for (const [name, t] of a.version) after.get(name)!.values.forEach((x, i) => expect(x).toBeCloseTo(t.values[i]! - 0.0625, 6));
  });

  it("gets the documented refusals: a wrong signature, a reused nonce's replay of another body, a stranger", async () => {
    const fed = "documented";
    const secret = await secretOf("doc-a");
    const wrong = await send("doc-a", `${secret}x`, "GET", `/federations/${fed}`);
    expect([wrong.status, ((await wrong.json()) as { error: { code: string } }).error.code]).toEqual([401, "signature_invalid"]);
    const stranger = await send("doc-z", await secretOf("doc-z"), "GET", `/federations/${fed}`);
    expect(stranger.status).toBe(403);
    // The same Idempotency-Key with another body: a conflict, not a second fold.
    const body = writeSafetensors(new Map([["x", { shape: [1], values: Float32Array.of(1) }]]), { num_examples: "1" });
    const conflict = await send("doc-a", secret, "PUT", `/federations/${fed}/rounds/1/updates/doc-a`, body, {
      "idempotency-key": `${fed}/1/doc-a`,
    });
    expect([conflict.status, ((await conflict.json()) as { error: { code: string } }).error.code]).toEqual([409, "upload_conflict"]);
  });
});
