// The four phases of SecAgg+ (Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving
// Machine Learning", section 4; Bell et al. 2020 for the sparse graph) as pure functions of a client's
// secrets and of what the server relays, so a client worker and the aggregator Durable Object can run
// them a phase at a time and keep their state between:
//   1. advertise: each client publishes two X25519 public keys (share encryption, masking);
//   2. share keys: each splits its masking secret key and a fresh self-mask seed t-of-deg among its
//      neighbours (Shamir, shamir-secret-sharing) and sends each neighbour its two shares, AES-GCM sealed;
//   3. masked input: each sends its encoded update plus the self mask plus, per neighbour that shared,
//      ± the pair mask (they cancel in the sum);
//   4. unmask: each survivor reveals, per neighbour, the self-mask share if that neighbour sent its
//      input and the key share if it dropped, never both; the server removes the survivors' self masks
//      and the dropped clients' pair masks from the sum of the masked inputs.
// Below the threshold t of shares at any step the round fails with its reason. The threshold is more than
// half of every client's neighbours, so no two disjoint sets of neighbours can rebuild both of a client's
// secrets. Threat model: an honest-but-curious server (it relays what it gets and picks the graph's seed;
// adverts are authenticated by the transport's client signatures only) and clients that may drop out;
// the server checks each rebuilt secret against its advert (the seed's SHA-256, the key's public half),
// so a wrong share fails the round instead of corrupting the sum.
import { combine, split } from "shamir-secret-sharing";
import { SecAggError } from "./errors.ts";
import { addInto } from "./fixed-point.ts";
import { neighbourGraph } from "./graph.ts";
import {
  agree,
  type Bytes,
  expandMask,
  keyPair,
  openShare,
  privateFromBytes,
  publicBytes,
  publicOf,
  sameBytes,
  sealShare,
  secretBytes,
} from "./keys.ts";

/** A round's parameters, which every party derives the same way. */
export interface SecAggRound {
  /** Binds keys, masks and ciphertexts to one round: the federation and the round number. */
  context: string;
  /** Each client's neighbours. */
  graph: Map<string, string[]>;
  /** Shares needed to rebuild a secret; also the fewest neighbours a client must keep. */
  threshold: number;
  /** Elements of the encoded update. */
  length: number;
}

/**
 * Refuses a threshold that is not over half of every client's neighbours (clients keep `fewest` to `most`), or
 * that is more than the fewest. The server checks the graph it draws; each client checks its own neighbours,
 * so a server that asks for fewer shares than that is refused before any is made.
 */
export function checkThreshold(threshold: number, fewest: number, most: number): void {
  const least = Math.max(2, Math.floor(most / 2) + 1);
  if (!(Number.isInteger(threshold) && threshold >= least && threshold <= fewest))
    throw new SecAggError(
      "secagg_invalid",
      `the threshold is a whole number in [${least}, ${fewest}] (over half the neighbours, at most the fewest), got ${threshold}`,
    );
}

export function secAggRound(
  context: string,
  clients: readonly string[],
  o: { degree: number; threshold: number; seed: number; length: number },
): SecAggRound {
  const graph = neighbourGraph(clients, o.degree, o.seed);
  const degrees = [...graph.values()].map((n) => n.length);
  const fewest = Math.min(...degrees);
  checkThreshold(o.threshold, fewest, Math.max(...degrees));
  if (fewest > 255)
    throw new SecAggError("secagg_invalid", `Shamir over GF(2^8) makes at most 255 shares; a client has ${fewest} neighbours`);
  return { context, graph, threshold: o.threshold, length: o.length };
}

/** What a client publishes in phase 1. */
export interface Advert {
  encryptionKey: Bytes;
  maskingKey: Bytes;
  /** SHA-256 of the self-mask seed: the server checks the seed it rebuilds against it. */
  seedDigest: Bytes;
}

/** What a client keeps between phases (in its own storage): its key pairs and its self-mask seed. */
export interface ClientSecrets {
  id: string;
  encryption: CryptoKeyPair;
  masking: CryptoKeyPair;
  seed: Bytes;
  /**
   * The phases this client has answered in the round, kept with its secrets: a second masked input would
   * reuse the masks (leaking the difference of two inputs), a second unmask could reveal both of a peer's shares.
   */
  answered: Set<"input" | "unmask">;
}

/** Records that a client answers `phase`, refusing a second answer in the same round. */
function answerOnce(secrets: ClientSecrets, phase: "input" | "unmask"): void {
  if (secrets.answered.has(phase))
    throw new SecAggError("protocol_violation", `client "${secrets.id}" already answered the ${phase} phase`);
  secrets.answered.add(phase);
}

const sha256 = async (b: Uint8Array) => new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(b)));

const SECRET_BYTES = 32;
/** A Shamir share of a 32-byte secret: the secret's length and one byte for the share's x. */
const SHARE_BYTES = SECRET_BYTES + 1;

export async function advertise(id: string): Promise<{ secrets: ClientSecrets; advert: Advert }> {
  const [encryption, masking] = await Promise.all([keyPair(), keyPair()]);
  const secrets: ClientSecrets = {
    id,
    encryption,
    masking,
    seed: crypto.getRandomValues(new Uint8Array(SECRET_BYTES)),
    answered: new Set(),
  };
  return { secrets, advert: await advertOf(secrets) };
}

/** The advert of a client's secrets: the same every time, so a client that kept them can send it again. */
export async function advertOf(secrets: ClientSecrets): Promise<Advert> {
  return {
    encryptionKey: await publicBytes(secrets.encryption.publicKey),
    maskingKey: await publicBytes(secrets.masking.publicKey),
    seedDigest: await sha256(secrets.seed),
  };
}

/** The adverts of `id`'s neighbours that advertised (the server relays this in phase 2). */
export function rosterFor(round: SecAggRound, adverts: ReadonlyMap<string, Advert>, id: string): Map<string, Advert> {
  return new Map((round.graph.get(id) ?? []).filter((j) => adverts.has(j)).map((j) => [j, adverts.get(j)!]));
}

function keepEnough(round: SecAggRound, id: string, have: number, what: string): void {
  if (have < round.threshold)
    throw new SecAggError("below_threshold", `client "${id}" has ${have} ${what}, below the threshold ${round.threshold}`);
}

/** Phase 2: the sealed shares for each neighbour in the roster, by recipient. */
export async function shareKeys(
  round: SecAggRound,
  secrets: ClientSecrets,
  roster: ReadonlyMap<string, Advert>,
): Promise<Map<string, Bytes>> {
  // A peer whose key does not agree (a low-order X25519 point) is left out rather than stopping the client.
  const agreements = new Map<string, Bytes>();
  for (const [j, advert] of roster) {
    const agreement = await agree(secrets.encryption.privateKey, advert.encryptionKey).catch(() => null);
    if (agreement) agreements.set(j, agreement);
  }
  keepEnough(round, secrets.id, agreements.size, "neighbours that advertised usable keys");
  const peers = [...agreements.keys()];
  const [keyShares, seedShares] = await Promise.all([
    split(await secretBytes(secrets.masking.privateKey), peers.length, round.threshold),
    split(secrets.seed, peers.length, round.threshold),
  ]);
  const sealed = new Map<string, Bytes>();
  for (const [k, j] of peers.entries()) {
    const plaintext = new Uint8Array(2 * SHARE_BYTES);
    plaintext.set(keyShares[k]!);
    plaintext.set(seedShares[k]!, SHARE_BYTES);
    sealed.set(j, await sealShare(agreements.get(j)!, round.context, secrets.id, j, plaintext));
  }
  return sealed;
}

/** The ciphertexts addressed to `id` (phase 3's inbox): from the neighbours that shared their keys. */
export function inboxFor(shared: ReadonlyMap<string, ReadonlyMap<string, Bytes>>, id: string): Map<string, Bytes> {
  return new Map([...shared].filter(([, out]) => out.has(id)).map(([from, out]) => [from, out.get(id)!]));
}

/** The pair mask of a and b, from either side (X25519 agrees), labelled by the sorted pair. */
async function pairMask(
  round: SecAggRound,
  mine: CryptoKey,
  self: string,
  peer: string,
  peerKey: Uint8Array,
  start = 0,
  length = round.length,
): Promise<Uint32Array> {
  const [a, b] = self < peer ? [self, peer] : [peer, self];
  return expandMask(await agree(mine, peerKey), round.context, `pair ${a} ${b}`, length, start);
}

const selfMask = (round: SecAggRound, id: string, seed: Uint8Array) => expandMask(seed, round.context, `self ${id}`, round.length);

/** A client's view from phase 3 on: its secrets, its neighbours' adverts, and the shares they sent it. */
export interface ClientView {
  secrets: ClientSecrets;
  roster: ReadonlyMap<string, Advert>;
  inbox: ReadonlyMap<string, Bytes>;
}

/** Phase 3: the encoded input + the self mask + per neighbour that shared, + the pair mask if its id sorts after ours, − if before. */
export async function maskInput(round: SecAggRound, { secrets, roster, inbox }: ClientView, input: Uint32Array): Promise<Uint32Array> {
  if (input.length !== round.length)
    throw new SecAggError("secagg_invalid", `an input of ${input.length} elements in a round of ${round.length}`);
  keepEnough(round, secrets.id, inbox.size, "neighbours that shared their keys");
  answerOnce(secrets, "input");
  const y = addInto(Uint32Array.from(input), await selfMask(round, secrets.id, secrets.seed));
  for (const j of inbox.keys()) {
    const advert = roster.get(j);
    if (!advert) throw new SecAggError("protocol_violation", `"${j}" shared keys with "${secrets.id}" without being its neighbour`);
    addInto(y, await pairMask(round, secrets.masking.privateKey, secrets.id, j, advert.maskingKey), secrets.id < j ? 1 : -1);
  }
  return y;
}

/** What the server asks in phase 4: who sent a masked input and who, having shared keys, did not. */
export interface UnmaskRequest {
  survivors: ReadonlySet<string>;
  dropped: ReadonlySet<string>;
}

/** One revealed share: of a survivor's self-mask seed, or of a dropped client's masking key. */
export interface RevealedShare {
  kind: "seed" | "key";
  share: Bytes;
}

/** Phase 4: per neighbour in the inbox, the one share the request allows; both asked for one peer is refused. */
export async function unmask(
  round: SecAggRound,
  { secrets, roster, inbox }: ClientView,
  request: UnmaskRequest,
): Promise<Map<string, RevealedShare>> {
  for (const j of request.survivors)
    if (request.dropped.has(j)) throw new SecAggError("protocol_violation", `"${j}" is asked for as both a survivor and dropped`);
  keepEnough(round, secrets.id, [...inbox.keys()].filter((j) => request.survivors.has(j)).length + 1, "surviving neighbours and itself");
  answerOnce(secrets, "unmask");
  const revealed = new Map<string, RevealedShare>();
  for (const [j, ciphertext] of inbox) {
    const kind = request.survivors.has(j) ? "seed" : request.dropped.has(j) ? "key" : null;
    if (!kind) continue;
    // A share that does not open (a neighbour that sent garbage) is not revealed; the others still are.
    const plaintext = await agree(secrets.encryption.privateKey, roster.get(j)!.encryptionKey)
      .then((agreement) => openShare(agreement, round.context, j, secrets.id, ciphertext))
      .catch(() => null);
    if (!plaintext) continue;
    revealed.set(j, { kind, share: plaintext.slice(kind === "key" ? 0 : SHARE_BYTES, kind === "key" ? SHARE_BYTES : 2 * SHARE_BYTES) });
  }
  return revealed;
}

/** What the server rebuilds from the unmask answers: each survivor's self-mask seed, each dropped client's masking key. */
export interface RecoveredSecrets {
  seeds: Map<string, Uint8Array>;
  keys: Map<string, CryptoKey>;
}

/**
 * The server's secrets for unmasking, from phase 4's answers (`responses`, by responder): each survivor's
 * self-mask seed and each dropped client's masking key, rebuilt from t shares and checked against its advert.
 * `shared`: who completed phase 2.
 */
export async function recoverSecrets(
  round: SecAggRound,
  adverts: ReadonlyMap<string, Advert>,
  shared: ReadonlySet<string>,
  survivors: ReadonlySet<string>,
  responses: ReadonlyMap<string, ReadonlyMap<string, RevealedShare>>,
): Promise<RecoveredSecrets> {
  keepEnough(round, "the server", survivors.size, "surviving clients");
  for (const i of survivors)
    if (!shared.has(i)) throw new SecAggError("protocol_violation", `"${i}" sent a masked input without sharing its keys`);
  // Each peer's revealed shares with their responders, in one pass: looking each peer up in every response
  // would cost clients² lookups, seconds at thousands of clients, in every unmasking slice.
  const revealed = new Map<string, [string, RevealedShare][]>();
  for (const [responder, shares] of responses)
    for (const [peer, s] of shares) {
      const list = revealed.get(peer);
      if (list) list.push([responder, s]);
      else revealed.set(peer, [[responder, s]]);
    }
  const sharesOf = (peer: string, kind: RevealedShare["kind"]) => {
    const neighbours = new Set(round.graph.get(peer) ?? []);
    const got = (revealed.get(peer) ?? []).map(([responder, s]) => {
      if (s.kind !== kind || !neighbours.has(responder))
        throw new SecAggError(
          "protocol_violation",
          `"${responder}" revealed a ${s.kind} share of "${peer}", which the round never asks of it`,
        );
      return s.share;
    });
    if (got.length < round.threshold)
      throw new SecAggError(
        "below_threshold",
        `${got.length} ${kind} shares of "${peer}" came back, below the threshold ${round.threshold}`,
      );
    return got;
  };
  const wrong = (i: string, what: string) =>
    new SecAggError("protocol_violation", `the shares of "${i}"'s ${what} do not rebuild the one it advertised`);
  /**
   * The secret the shares rebuild that `fits` its advert: from all of them, else from all but one (a single
   * wrong or repeated share, a faulty or malicious responder, is left out while t others remain).
   */
  const rebuild = async (shares: Uint8Array[], fits: (secret: Uint8Array) => Promise<boolean>) => {
    const sets = [shares, ...(shares.length > round.threshold ? shares.map((_, k) => shares.filter((_, j) => j !== k)) : [])];
    for (const set of sets) {
      const secret = await combine(set).catch(() => null);
      if (secret && (await fits(secret))) return secret;
    }
    return null;
  };
  const recovered: RecoveredSecrets = { seeds: new Map(), keys: new Map() };
  for (const i of survivors) {
    const seed = await rebuild(sharesOf(i, "seed"), async (s) => sameBytes(await sha256(s), adverts.get(i)!.seedDigest));
    if (!seed) throw wrong(i, "self-mask seed");
    recovered.seeds.set(i, seed);
  }
  for (const i of shared) {
    if (survivors.has(i)) continue;
    const advertised = adverts.get(i)!.maskingKey;
    const keyOf = (s: Uint8Array) => privateFromBytes(s, advertised).catch(() => null);
    const secret = await rebuild(sharesOf(i, "key"), async (s) => {
      const key = await keyOf(s);
      return key !== null && sameBytes(await publicOf(key).catch(() => new Uint8Array()), advertised);
    });
    const key = secret && (await keyOf(secret));
    if (!key) throw wrong(i, "masking key");
    recovered.keys.set(i, key);
  }
  return recovered;
}

/**
 * Removes the masks from words [start, start + segment.length) of the sum of the survivors' masked inputs,
 * in place: each survivor's self mask and each dropped client's pair masks with its surviving neighbours.
 * A segment at a time, so a large sum is unmasked without sitting whole in memory; `start` a multiple of 4.
 */
export async function removeMasks(
  round: SecAggRound,
  adverts: ReadonlyMap<string, Advert>,
  survivors: ReadonlySet<string>,
  recovered: RecoveredSecrets,
  start: number,
  segment: Uint32Array,
): Promise<Uint32Array> {
  const n = segment.length;
  for (const [i, seed] of recovered.seeds) addInto(segment, await expandMask(seed, round.context, `self ${i}`, n, start), -1);
  for (const [i, key] of recovered.keys)
    for (const j of round.graph.get(i) ?? []) {
      if (!survivors.has(j)) continue;
      // j added the pair mask with sign + when j sorts before i.
      addInto(segment, await pairMask(round, key, i, j, adverts.get(j)!.maskingKey, start, n), j < i ? -1 : 1);
    }
  return segment;
}

/** The masks removeMasks expands for each word: the survivors' self masks and the dropped clients' pair masks with surviving neighbours. */
export function maskCount(round: SecAggRound, survivors: ReadonlySet<string>, recovered: RecoveredSecrets): number {
  let masks = recovered.seeds.size;
  for (const i of recovered.keys.keys()) masks += (round.graph.get(i) ?? []).filter((j) => survivors.has(j)).length;
  return masks;
}

/** The sum of the survivors' inputs (in Z_2^32) from the sum of their masked inputs: recoverSecrets, then removeMasks. */
export async function unmaskSum(
  round: SecAggRound,
  adverts: ReadonlyMap<string, Advert>,
  shared: ReadonlySet<string>,
  survivors: ReadonlySet<string>,
  maskedSum: Uint32Array,
  responses: ReadonlyMap<string, ReadonlyMap<string, RevealedShare>>,
): Promise<Uint32Array> {
  const recovered = await recoverSecrets(round, adverts, shared, survivors, responses);
  return removeMasks(round, adverts, survivors, recovered, 0, Uint32Array.from(maskedSum));
}
