// A federation's secure-aggregation setting (SecAgg+, src/secagg/) as the operator posts it, and the
// messages of its phases as clients send them (JSON, bytes as lowercase hex), each parsed before use.
import * as v from "valibot";
import { ProtocolError } from "./errors.ts";

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

/** What a sampled client reads of its secure round: the parameters, and what the current phase gives it. */
export interface SecAggView {
  federationId: string;
  round: number;
  phase: SecurePhase | "closed" | "failed";
  /** The phase's deadline (the masked input's is the round's training deadline). */
  deadline: number;
  /** Binds keys, masks and ciphertexts to this round. */
  context: string;
  threshold: number;
  /** Words of the masked input: the version's values and the weight ratio. */
  length: number;
  /** The fixed-point encoding: values clamped to [−range, range], `bits` bits each; the weight ratio min(n / maxWeight, 1). */
  range: number;
  bits: number;
  maxWeight: number;
  /** This client's neighbours in the round's graph. */
  neighbours: string[];
  /** With distributed DP: clip the update to this L2 norm and add N(0, std²) to each value before encoding. */
  noise?: { clip: number; std: number };
  /** From the share phase on: the adverts of the neighbours that advertised. */
  roster?: Record<string, AdvertMessage>;
  /** From the masked-input phase on, to a client that shared: the sealed shares its neighbours sent it. */
  inbox?: Record<string, string>;
  /** In the unmask phase, to a survivor: which neighbours sent their masked input and which, having shared, did not. */
  request?: { survivors: string[]; dropped: string[] };
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
  if (!r.success) {
    const issue = r.issues[0];
    throw new SecAggMessageError("message_invalid", `the ${phase} message: field "${v.getDotPath(issue) ?? "(root)"}": ${issue.message}`);
  }
  return r.output as v.InferOutput<(typeof SECAGG_MESSAGES)[P]>;
}

/** Lowercase hex to bytes (the messages' hex is checked by their schemas). */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
