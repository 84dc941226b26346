// One run of a piece of work per key at a time within an object: a Durable Object's awaits let other events
// in, so a second caller of work already under way (the alarm and the operator ending the same round, two first
// uploads at a shard) shares its promise instead of starting it again. What the work records in storage is
// what makes it resumable after a restart; this only keeps one instance from doing it twice at once.
export class SingleFlight {
  private readonly running = new Map<string, Promise<void>>();

  run(key: string, work: () => Promise<void>): Promise<void> {
    const under = this.running.get(key);
    if (under) return under;
    const started = work().finally(() => this.running.delete(key));
    this.running.set(key, started);
    return started;
  }
}
