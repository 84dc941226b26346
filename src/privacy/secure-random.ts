// Uniform draws from the platform's CSPRNG (crypto.getRandomValues, in Workers and Node alike), for what
// privacy needs unpredictable: the noise, a private federation's client sample, the encoding's rounding.

/** A source of uniforms in [0, 1) with 53 random bits each, drawing 64 KiB of randomness at a time. */
export function secureUniform(): () => number {
  // 65,536 bytes is the most one getRandomValues call fills.
  const words = new Uint32Array(16_384);
  let w = words.length;
  return () => {
    if (w + 2 > words.length) {
      crypto.getRandomValues(words);
      w = 0;
    }
    const hi = words[w++]! >>> 5;
    const lo = words[w++]! >>> 6;
    return (hi * 67_108_864 + lo) / 9_007_199_254_740_992;
  };
}
