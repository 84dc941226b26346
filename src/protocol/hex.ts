/** Bytes as lowercase hex, two digits a byte (digests, nonces, secrets). */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** SHA-256 of bytes, or of a string's UTF-8. */
export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // WebCrypto takes no view of a SharedArrayBuffer (WebIDL BufferSource): such a view is copied, any other hashed in place.
  const own = bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : Uint8Array.from(bytes);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", own));
}

/** SHA-256 as lowercase hex (64 digits). */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  return toHex(await sha256(data));
}
