// A counting semaphore with a bounded queue: `slots` requests compute at once, `queued` more wait (until
// their signal aborts), and beyond that a request is refused at once so the client can retry later.

export class GateFull extends Error {}

export class Gate {
  private readonly slots: number;
  private readonly queued: number;
  private computing = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(slots: number, queued: number) {
    this.slots = slots;
    this.queued = queued;
  }

  /**
   * Waits for a slot and returns the function that frees it; throws GateFull when the queue is full,
   * `signal.reason` when it aborts first.
   */
  async enter(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.computing < this.slots) this.computing++;
    else {
      if (this.waiting.length >= this.queued)
        throw new GateFull(`all ${this.slots} computing slots are busy and ${this.waiting.length} requests wait`);
      await new Promise<void>((resolve, reject) => {
        const go = () => {
          signal.removeEventListener("abort", abort);
          resolve();
        };
        const abort = () => {
          this.waiting.splice(this.waiting.indexOf(go), 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", abort, { once: true });
        this.waiting.push(go);
      });
    }
    let left = false;
    return () => {
      if (left) return;
      left = true;
      // The slot passes straight to the first waiter, if any.
      const next = this.waiting.shift();
      if (next) next();
      else this.computing--;
    };
  }

  stats(): { computing: number; queued: number } {
    return { computing: this.computing, queued: this.waiting.length };
  }
}
