// A federation's secure-aggregation setting (SecAgg+, src/secagg/) as the operator posts it, and the
// messages of its phases as clients send them (JSON, bytes as lowercase hex), each parsed before use.
import * as v from "valibot";
import { firstIssue } from "../errors.ts";
import { ProtocolError } from "./errors.ts";
import { MAX_UPLOAD_BYTES } from "./platform-limits.ts";

export const SecureAggregationConfig = v.strictObject({
  /** Neighbours per client (even): default 2 ⌈log2 n⌉ for n sampled clients (Bell et al. 2020), the complete graph below it. */
  degree: v.optional(
    v.pipe(
      v.number(),
      v.integer(),
      v.minValue(2),
      v.maxValue(254),
      v.check((d) => d % 2 === 0, "must be even"),
    ),
  ),
  /**
   * The share of sampled clients expected to drop during a round: without a degree, the graph is made dense
   * enough that every client keeps its threshold of surviving neighbours with probability 0.999
   * (src/secagg/graph.ts degreeForDropouts). Absent: 2 ⌈log2 n⌉, which survives few dropouts in large rounds.
   */
  dropoutRate: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(0.9))),
  /**
   * Shares that rebuild a client's secrets: more than half its neighbours, at most the fewest neighbours a
   * client has (default: the least allowed, so the most dropouts are survived). Also the fewest survivors
   * a round can be unmasked with.
   */
  threshold: v.optional(v.pipe(v.number(), v.integer(), v.minValue(2), v.maxValue(255))),
  /**
   * Each value a client sends (its update times its weight ratio) is clamped to [−range, range] before the
   * fixed-point encoding; at least 1, since the weight ratio itself is one of the values.
   */
  range: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(1e6)), 1),
  /**
   * A client's weight is min(num_examples / maxWeight, 1), sent inside the masked vector (the aggregator
   * learns only the sum): set it near the largest example count expected, or small clients' updates lose
   * precision. Default: the federation's maxExamplesPerClient.
   */
  maxWeight: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000_000))),
  /** How long each key phase (advertise, share keys, unmask) waits for the clients; the masked input waits deadlineSeconds. */
  phaseSeconds: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(24 * 3600)), 120),
});
export type SecureAggregationConfig = v.InferOutput<typeof SecureAggregationConfig>;

/** Byte lengths on the wire: X25519 keys and digests; a sealed pair of shares (IV + 2 × 33 bytes + GCM tag); one share. */
export const SECAGG_BYTES = { key: 32, sealedShares: 12 + 66 + 16, share: 33 } as const;
/** Most entries a shares or unmask message holds: Shamir over GF(2^8) makes at most 255 shares. */
const MAX_PEERS = 255;

const hexOf = (bytes: number) =>
  v.pipe(v.string(), v.regex(new RegExp(`^[0-9a-f]{${2 * bytes}}$`), `must be ${bytes} bytes as lowercase hex`));
const peers = <T extends v.GenericSchema>(value: T) =>
  v.pipe(
    v.record(v.pipe(v.string(), v.maxLength(64)), value),
    v.check((r) => Object.keys(r).length <= MAX_PEERS, `at most ${MAX_PEERS} peers`),
  );

/** Phase 1: the client's two public keys and its self-mask seed's SHA-256. */
export const AdvertMessage = v.strictObject({
  encryptionKey: hexOf(SECAGG_BYTES.key),
  maskingKey: hexOf(SECAGG_BYTES.key),
  seedDigest: hexOf(SECAGG_BYTES.key),
});
/** Phase 2: the sealed shares, by the neighbour each is for. */
export const SharesMessage = v.strictObject({ shares: peers(hexOf(SECAGG_BYTES.sealedShares)) });
/** Phase 4: the one share revealed per neighbour, by the neighbour it is of. */
export const UnmaskMessage = v.strictObject({
  shares: peers(v.strictObject({ kind: v.picklist(["seed", "key"]), share: hexOf(SECAGG_BYTES.share) })),
});

export type AdvertMessage = v.InferOutput<typeof AdvertMessage>;
export type SharesMessage = v.InferOutput<typeof SharesMessage>;
export type UnmaskMessage = v.InferOutput<typeof UnmaskMessage>;

/** A secure round's phases, then the aggregator's unmasking before it closes. */
export type SecurePhase = "advertise" | "share" | "input" | "unmask" | "unmasking";

const whole = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));
const ids = v.pipe(v.array(v.pipe(v.string(), v.maxLength(64))), v.maxLength(MAX_PEERS));

/**
 * What a sampled client reads of its secure round: the parameters, and what the current phase gives it. The
 * client parses it before it acts on it (fields it does not know are dropped); the threshold is checked
 * against its neighbours where the round is built (src/secagg/client.ts roundOf).
 */
export const SecAggView = v.object({
  federationId: v.pipe(v.string(), v.maxLength(64)),
  round: whole(1, Number.MAX_SAFE_INTEGER),
  phase: v.picklist(["advertise", "share", "input", "unmask", "unmasking", "closed", "failed"]),
  /** The phase's deadline (the masked input's is the round's training deadline). */
  deadline: whole(0, Number.MAX_SAFE_INTEGER),
  /** Binds keys, masks and ciphertexts to this round. */
  context: v.pipe(v.string(), v.maxLength(256)),
  threshold: whole(2, MAX_PEERS),
  /** Words of the masked input (4 bytes each, within one upload): the version's values and the weight ratio. */
  length: whole(1, MAX_UPLOAD_BYTES / 4),
  /**
   * The fixed-point encoding: values clamped to [−range, range], `bits` bits each; the weight ratio min(n / maxWeight, 1).
   * No cap but finiteness: with distributed DP the range grows to cover the clip and the noise (src/secagg/federation.ts).
   */
  range: v.pipe(v.number(), v.finite(), v.minValue(1)),
  bits: whole(8, 32),
  maxWeight: whole(1, 1_000_000_000),
  /** This client's neighbours in the round's graph. */
  neighbours: ids,
  /** With distributed DP: clip the update to this L2 norm and add N(0, std²) to each value before encoding. */
  noise: v.optional(v.object({ clip: v.pipe(v.number(), v.finite(), v.gtValue(0)), std: v.pipe(v.number(), v.finite(), v.minValue(0)) })),
  /** From the share phase on: the adverts of the neighbours that advertised. */
  roster: v.optional(peers(AdvertMessage)),
  /** From the masked-input phase on, to a client that shared: the sealed shares its neighbours sent it. */
  inbox: v.optional(peers(hexOf(SECAGG_BYTES.sealedShares))),
  /** In the unmask phase, to a survivor: which neighbours sent their masked input and which, having shared, did not. */
  request: v.optional(v.object({ survivors: ids, dropped: ids })),
});
export type SecAggView = v.InferOutput<typeof SecAggView>;

export class SecAggViewError extends ProtocolError<"view_invalid"> {}

/** A secure round's view as the coordinator answers it, or SecAggViewError naming the first field out of shape. */
export function parseSecAggView(json: unknown): SecAggView {
  const r = v.safeParse(SecAggView, json);
  if (!r.success) throw new SecAggViewError("view_invalid", firstIssue(r.issues, "the coordinator's secure round view"));
  return r.output;
}

export const SECAGG_MESSAGES = { advert: AdvertMessage, shares: SharesMessage, unmask: UnmaskMessage } as const;
export type SecAggPhaseName = keyof typeof SECAGG_MESSAGES;

export class SecAggMessageError extends ProtocolError<"message_invalid"> {}

/** A phase's message from its JSON body, or SecAggMessageError naming the first field out of shape. */
export function parseSecAggMessage<P extends SecAggPhaseName>(phase: P, body: Uint8Array): v.InferOutput<(typeof SECAGG_MESSAGES)[P]> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new SecAggMessageError("message_invalid", `the ${phase} message is not valid JSON`);
  }
  const r = v.safeParse(SECAGG_MESSAGES[phase], json);
  if (!r.success) throw new SecAggMessageError("message_invalid", firstIssue(r.issues, `the ${phase} message`));
  return r.output as v.InferOutput<(typeof SECAGG_MESSAGES)[P]>;
}

/** Lowercase hex to bytes (the messages' hex is checked by their schemas). */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
