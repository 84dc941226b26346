// A client's side of a secure round over the wire (src/protocol/secure-aggregation.ts): its secrets kept
// between phases as JSON in its own storage, the round read from the aggregator's view of it, and each
// phase's answer as the message the aggregator takes. The phases themselves are protocol.ts's.
import { fromHex } from "../protocol/secure-aggregation.ts";
import type { AdvertMessage, SecAggView, SharesMessage, UnmaskMessage } from "../protocol/secure-aggregation.ts";
import { toHex } from "../protocol/hex.ts";
import { arraySource, flatLayout, tensorFileSource } from "../fl/flat-tensors.ts";
import { privatizeUpdate } from "../privacy/distributed-dp.ts";
import { readSafetensorsHeader } from "../protocol/safetensors.ts";
import { SecAggError } from "./errors.ts";
import { encodeUpdate } from "./masked-update.ts";
import { privateFromBytes, publicBytes, secretBytes } from "./keys.ts";
import {
  type Advert,
  checkThreshold,
  type ClientSecrets,
  type ClientView,
  type RevealedShare,
  type SecAggRound,
  type UnmaskRequest,
} from "./protocol.ts";
import type { Bytes } from "./keys.ts";

/**
 * The round as this client runs it: its own neighbours are the only part of the graph it needs. The
 * threshold is checked against them (over half), whatever the server says.
 */
export function roundOf(view: SecAggView, id: string): SecAggRound {
  checkThreshold(view.threshold, view.neighbours.length, view.neighbours.length);
  return { context: view.context, graph: new Map([[id, view.neighbours]]), threshold: view.threshold, length: view.length };
}

export const advertMessage = (a: Advert): AdvertMessage => ({
  encryptionKey: toHex(a.encryptionKey),
  maskingKey: toHex(a.maskingKey),
  seedDigest: toHex(a.seedDigest),
});

const advertOf = (m: AdvertMessage): Advert => ({
  encryptionKey: fromHex(m.encryptionKey),
  maskingKey: fromHex(m.maskingKey),
  seedDigest: fromHex(m.seedDigest),
});

/** The neighbours' adverts from the view (share phase on). */
export function rosterOf(view: SecAggView): Map<string, Advert> {
  if (!view.roster) throw new SecAggError("secagg_invalid", `the round is in its ${view.phase} phase: no roster yet`);
  return new Map(Object.entries(view.roster).map(([j, m]) => [j, advertOf(m)]));
}

export const sharesMessage = (sealed: ReadonlyMap<string, Bytes>): SharesMessage => ({
  shares: Object.fromEntries([...sealed].map(([j, b]) => [j, toHex(b)])),
});

/** The client's view from the masked input on: its secrets, its roster and its inbox. */
export function clientView(view: SecAggView, secrets: ClientSecrets): ClientView {
  if (!view.inbox) throw new SecAggError("secagg_invalid", `the round is in its ${view.phase} phase: no inbox for "${secrets.id}"`);
  return {
    secrets,
    roster: rosterOf(view),
    inbox: new Map(Object.entries(view.inbox).map(([j, hex]) => [j, fromHex(hex)])),
  };
}

/** The unmask request from the view (unmask phase, to a survivor). */
export function requestOf(view: SecAggView): UnmaskRequest {
  if (!view.request) throw new SecAggError("secagg_invalid", `the round is in its ${view.phase} phase: nothing to unmask`);
  return { survivors: new Set(view.request.survivors), dropped: new Set(view.request.dropped) };
}

export const unmaskMessage = (revealed: ReadonlyMap<string, RevealedShare>): UnmaskMessage => ({
  shares: Object.fromEntries([...revealed].map(([j, s]) => [j, { kind: s.kind, share: toHex(s.share) }])),
});

/**
 * A client's update (a safetensors body of the version's tensors, as it would upload it in a plain round)
 * as the encoded vector it masks: with distributed DP clipped and noised first (`normals` draws the noise),
 * then each value times the weight ratio, and the ratio. The order is the body's tensors', which the
 * versions share (one writer lays them out). Returns the metadata the masked input carries too.
 */
export function encodeForRound(
  view: SecAggView,
  update: Uint8Array,
  uniform: () => number,
  normals: (n: number) => Float64Array,
): { encoded: Uint32Array; metadata: Record<string, string> } {
  const header = readSafetensorsHeader(update);
  const { source, metadata } = tensorFileSource(update, flatLayout(header), header.dataStart, "update");
  const values = new Float32Array(source.total);
  source.read(0, values);
  if (view.noise) privatizeUpdate(values, view.noise.clip, view.noise.std, normals);
  const enc = { fp: { range: view.range, bits: view.bits }, maxWeight: view.maxWeight, values: view.length - 1 };
  return { encoded: encodeUpdate(arraySource(values), Number(metadata.num_examples), enc, uniform), metadata };
}

/** A client's secrets as JSON for its own storage (never sent): both key pairs, the seed, the phases answered. */
export async function saveSecrets(s: ClientSecrets): Promise<string> {
  const pair = async (p: CryptoKeyPair) => ({
    secret: toHex(await secretBytes(p.privateKey)),
    public: toHex(await publicBytes(p.publicKey)),
  });
  return JSON.stringify({
    id: s.id,
    encryption: await pair(s.encryption),
    masking: await pair(s.masking),
    seed: toHex(s.seed),
    answered: [...s.answered],
  });
}

/** saveSecrets' inverse. */
export async function loadSecrets(json: string): Promise<ClientSecrets> {
  const o = JSON.parse(json) as {
    id: string;
    encryption: { secret: string; public: string };
    masking: { secret: string; public: string };
    seed: string;
    answered: ("input" | "unmask")[];
  };
  const pair = async (p: { secret: string; public: string }): Promise<CryptoKeyPair> => {
    const publicKey = await crypto.subtle.importKey("raw", fromHex(p.public), { name: "X25519" }, true, []);
    return { privateKey: await privateFromBytes(fromHex(p.secret), fromHex(p.public), true), publicKey };
  };
  return {
    id: o.id,
    encryption: await pair(o.encryption),
    masking: await pair(o.masking),
    seed: fromHex(o.seed),
    answered: new Set(o.answered),
  };
}
