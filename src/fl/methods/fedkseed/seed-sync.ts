// How a FedKSeed client brings its copy of the global model from the version it holds to the round's:
// each round's sparse per-seed change (FedKSeed-Pro's history needs them round by round), or, where the
// aggregator pruned those versions (keepVersions), one cumulative change since the version it holds, or
// since version 0, which is never pruned, starting again from w0.

/** The per-seed change from version `since` to `version`, or null when one of them is no longer kept. */
export type SeedChange = (version: number, since: number) => Promise<ReadonlyMap<number, number> | null>;

export interface SeedSync {
  /** True when the client must start again from w0 (its version was pruned): `changes` then start at version 0. */
  fromScratch: boolean;
  /** The changes to apply in order. */
  changes: ReadonlyMap<number, number>[];
}

export async function seedChangesTo(change: SeedChange, at: number, version: number): Promise<SeedSync> {
  const changes: ReadonlyMap<number, number>[] = [];
  for (; at < version; at++) {
    const next = await change(at + 1, at);
    if (next) {
      changes.push(next);
      continue;
    }
    const rest = await change(version, at);
    if (rest) return { fromScratch: false, changes: [...changes, rest] };
    const all = await change(version, 0);
    if (!all) throw new Error(`version ${version} is no longer kept by the aggregator`);
    return { fromScratch: true, changes: [all] };
  }
  return { fromScratch: false, changes };
}
