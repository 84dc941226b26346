// Attention inputs computed on the host: the additive attention bias (causal and padding) and the
// position ids, as transformers builds them for a batch with padding.

/** Added to masked attention scores; finite so a fully masked (padding) row gives no NaN. */
export const MASKED = -1e9;

/**
 * bias[b, 0, i, j] for queries i in [0, T) at absolute positions past + i and keys j in [0, past + T):
 * 0 when j <= past + i and key j is not padding, MASKED otherwise. `mask` is [B, past + T], 1 for real tokens.
 */
export function attentionBias(mask: ArrayLike<number>, batch: number, seq: number, past: number): Float32Array {
  const total = past + seq;
  const out = new Float32Array(batch * seq * total);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < seq; i++)
      for (let j = 0; j < total; j++) out[(b * seq + i) * total + j] = j <= past + i && mask[b * total + j] === 1 ? 0 : MASKED;
  return out;
}

/** Positions counting only real tokens (transformers: cumsum(mask) - 1, padding at 1), for the last `seq` columns. */
export function positionIds(mask: ArrayLike<number>, batch: number, seq: number, past: number): BigInt64Array {
  const total = past + seq;
  const out = new BigInt64Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    let seen = 0;
    for (let j = 0; j < total; j++) {
      const real = mask[b * total + j] === 1;
      if (real) seen++;
      if (j >= past) out[b * seq + j - past] = BigInt(real ? seen - 1 : 1);
    }
  }
  return out;
}
