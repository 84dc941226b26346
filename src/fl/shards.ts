// Sharded aggregation's arithmetic (docs/ARCHITECTURE.md, "Sharded aggregation"): which shard object a
// client's upload goes to in a round, and the part of the round's quorum each shard answers for.

/**
 * The shard (0 … shards − 1) that folds `client`'s upload in `round`: FNV-1a (32 bits) of the round and the
 * client id. A load-spreading hash, not a secret: a client cannot choose its shard (the coordinator routes by
 * its signed id), and the round in the hash moves a heavy client to another shard from one round to the next.
 */
export function shardOf(round: number, client: string, shards: number): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(`${round}\n${client}`)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

export interface ShardPlan {
  shard: number;
  /** The round's sampled clients this shard folds, in order. */
  clients: string[];
  /** Uploads after which the shard tells the root it has its part of the quorum: ⌈quorum · clients / sampled⌉. */
  quorum: number;
}

/**
 * Each shard's clients and part of the quorum. The parts sum to at least `quorum` (each is rounded up) and
 * none exceeds its shard's clients, so the round closes at quorum once every shard has reached its part.
 */
export function planShards(round: number, sampled: readonly string[], shards: number, quorum: number): ShardPlan[] {
  const plans = Array.from({ length: shards }, (_, shard): ShardPlan => ({ shard, clients: [], quorum: 0 }));
  for (const client of sampled) plans[shardOf(round, client, shards)]!.clients.push(client);
  for (const p of plans) p.quorum = Math.ceil((quorum * p.clients.length) / sampled.length);
  return plans;
}

/** Whether a federation's config spreads its uploads over shard objects (more than one). */
export const isSharded = (config: { shards?: number | undefined }) => (config.shards ?? 1) > 1;

/** The name of a federation's shard object: "/" cannot occur in a federation id, so no federation has it. */
export const shardObjectName = (federation: string, shard: number) => `${federation}/shard-${shard}`;
