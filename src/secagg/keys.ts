// The cryptography of SecAgg+ in WebCrypto (workerd and Node alike): X25519 key agreement, HKDF-SHA256 to
// a full 256-bit key per use (never a short seed: Flower's mask generator folds its seed to 32 bits,
// adap/flower#7522), AES-CTR keystreams as the masks' pseudo-random generator (any party holding the key
// regenerates the same mask), and AES-GCM for the shares routed through the server, bound to the round
// and to the pair by its associated data.
import { SecAggError } from "./errors.ts";

const X25519 = { name: "X25519" } as const;
/** Bytes WebCrypto accepts (an ArrayBuffer behind them, not a shared one). */
export type Bytes = Uint8Array<ArrayBuffer>;
const utf8 = (s: string) => new TextEncoder().encode(s);

/** A client's key pair for one use (share encryption or masking), extractable so its secret can be shared. */
export async function keyPair(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(X25519, true, ["deriveBits"])) as CryptoKeyPair;
}

/** The 32 raw bytes of a public key, as clients advertise it. */
export async function publicBytes(key: CryptoKey): Promise<Bytes> {
  return new Uint8Array((await crypto.subtle.exportKey("raw", key)) as ArrayBuffer);
}

const base64url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
const fromBase64url = (s: string) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

/** The 32 secret bytes of a private key: what Shamir shares, so the server can rebuild a dropped client's masks. */
export async function secretBytes(key: CryptoKey): Promise<Bytes> {
  const jwk = (await crypto.subtle.exportKey("jwk", key)) as JsonWebKey;
  return fromBase64url(jwk.d!);
}

/** A private key from its secret bytes and its public key (JWK needs both); extractable when a client keeps it to share later. */
export async function privateFromBytes(secret: Uint8Array, publicKey: Uint8Array, extractable = false): Promise<CryptoKey> {
  return crypto.subtle.importKey("jwk", { kty: "OKP", crv: "X25519", d: base64url(secret), x: base64url(publicKey) }, X25519, extractable, [
    "deriveBits",
  ]);
}

/** The X25519 shared secret of `mine` and a peer's raw public key. */
export async function agree(mine: CryptoKey, peer: Uint8Array): Promise<Bytes> {
  const key = await crypto.subtle.importKey("raw", new Uint8Array(peer), X25519, false, []);
  // The Web Crypto spec names the peer's key "public" (workers-types spells it $public in its types only).
  const algorithm = { name: "X25519", public: key } as unknown as Parameters<typeof crypto.subtle.deriveBits>[0];
  return new Uint8Array(await crypto.subtle.deriveBits(algorithm, mine, 256));
}

let probe: Promise<CryptoKeyPair> | undefined;

/** Whether a raw public key agrees with a key pair of our own (a low-order X25519 point does not). */
export async function usableKey(publicKey: Uint8Array): Promise<boolean> {
  probe ??= keyPair();
  return agree((await probe).privateKey, publicKey).then(
    () => true,
    () => false,
  );
}

/** The public half of a private key, X25519(k, 9): how the server checks a masking key it rebuilt from shares. */
export async function publicOf(key: CryptoKey): Promise<Bytes> {
  const basepoint = new Uint8Array(32);
  basepoint[0] = 9;
  return agree(key, basepoint);
}

/** Whether two byte strings are equal. */
export const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** HKDF-SHA256 of `secret` to a 256-bit key for `algorithm`, salted by the round's context, labelled by `info`. */
async function derive(secret: Uint8Array, context: string, info: string, algorithm: "AES-CTR" | "AES-GCM"): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey("raw", new Uint8Array(secret), "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: utf8(context), info: utf8(`fedflare secagg+ v1 ${info}`) },
    base,
    { name: algorithm, length: 256 },
    false,
    algorithm === "AES-CTR" ? ["encrypt"] : ["encrypt", "decrypt"],
  );
}

/**
 * Words [start, start + length) of the AES-CTR keystream under HKDF(secret): a mask any holder of the
 * secret regenerates, whole or a segment at a time (the counter block of word w is w / 4; `start` a
 * multiple of 4).
 */
export async function expandMask(secret: Uint8Array, context: string, label: string, length: number, start = 0): Promise<Uint32Array> {
  if (start % 4 !== 0) throw new SecAggError("secagg_invalid", `a mask segment starts at a multiple of 4 words, not ${start}`);
  const key = await derive(secret, context, `mask ${label}`, "AES-CTR");
  const counter = new Uint8Array(16);
  new DataView(counter.buffer).setBigUint64(8, BigInt(start / 4));
  const stream = await crypto.subtle.encrypt({ name: "AES-CTR", counter, length: 64 }, key, new Uint8Array(4 * length));
  return new Uint32Array(stream);
}

/** The associated data that binds a share ciphertext to its round and its direction. */
const shareAd = (context: string, from: string, to: string) => utf8(`${context}\u0000${from}\u0000${to}`);

/** `plaintext` encrypted for `to` under AES-GCM with HKDF(the pair's agreement): a random 12-byte IV first. */
export async function sealShare(agreement: Uint8Array, context: string, from: string, to: string, plaintext: Uint8Array): Promise<Bytes> {
  const key = await derive(agreement, context, "share", "AES-GCM");
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: shareAd(context, from, to) }, key, new Uint8Array(plaintext)),
  );
  const out = new Uint8Array(12 + sealed.length);
  out.set(iv);
  out.set(sealed, 12);
  return out;
}

/** sealShare's inverse; a ciphertext tampered with, replayed from another round or misrouted fails `decrypt_failed`. */
export async function openShare(agreement: Uint8Array, context: string, from: string, to: string, ciphertext: Uint8Array): Promise<Bytes> {
  const key = await derive(agreement, context, "share", "AES-GCM");
  const sealed = new Uint8Array(ciphertext);
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: sealed.subarray(0, 12), additionalData: shareAd(context, from, to) },
        key,
        sealed.subarray(12),
      ),
    );
  } catch {
    throw new SecAggError("decrypt_failed", `the shares from "${from}" to "${to}" do not decrypt in ${context}`);
  }
}
