/** A deterministic held-out split: every `every`-th item (1-based positions every, 2*every, ...) is held out. */
export function splitEvery<T>(items: readonly T[], every: number): { train: T[]; heldOut: T[] } {
  const train: T[] = [];
  const heldOut: T[] = [];
  items.forEach((x, i) => ((i + 1) % every === 0 ? heldOut : train).push(x));
  return { train, heldOut };
}
