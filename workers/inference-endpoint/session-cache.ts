// ORT sessions built on demand (a trunk per cut layer, a graph per trained shape), at most `capacity`
// kept, least recently used released first. A session evicted while requests still run on it is
// released when the last of them ends, so live sessions are at most `capacity` plus those in use.
import type { Releasable } from "../../src/engine/runtime.ts";

interface Entry<V> {
  value: Promise<V>;
  users: number;
  evicted: boolean;
}

export interface SessionStats {
  cached: number;
  built: number;
  released: number;
}

export class SessionCache<V extends Releasable> {
  private readonly capacity: number;
  private readonly entries = new Map<string, Entry<V>>();
  private built = 0;
  private released = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Runs `use` on the session under `key`, built by `build` when not cached; a failed build is not kept. */
  async use<T>(key: string, build: () => Promise<V>, use: (session: V) => Promise<T>): Promise<T> {
    let entry = this.entries.get(key);
    if (entry) this.entries.delete(key);
    else {
      entry = { value: build(), users: 0, evicted: false };
      this.built++;
      const made = entry;
      made.value.catch(() => {
        if (this.entries.get(key) === made) this.entries.delete(key);
      });
    }
    // Map order is insertion order: re-inserting makes this the most recently used.
    this.entries.set(key, entry);
    entry.users++;
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.capacity) break;
      this.entries.delete(k);
      e.evicted = true;
      if (e.users === 0) this.release(e);
    }
    try {
      return await use(await entry.value);
    } finally {
      entry.users--;
      if (entry.evicted && entry.users === 0) this.release(entry);
    }
  }

  stats(): SessionStats {
    return { cached: this.entries.size, built: this.built, released: this.released };
  }

  /** Evicts every session (for shutdown); those in use are released when their requests end. */
  clear(): void {
    for (const e of this.entries.values()) {
      e.evicted = true;
      if (e.users === 0) this.release(e);
    }
    this.entries.clear();
  }

  private release(e: Entry<V>): void {
    this.released++;
    // A build that failed has nothing to release.
    e.value.then((s) => s.release()).catch(() => undefined);
  }
}
