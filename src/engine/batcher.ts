// Dynamic batching: requests queue until `maxBatch` are waiting or the first has waited `maxWaitMs`,
// then run together in one call; one batch runs at a time, and what arrives meanwhile forms the next.

export interface BatcherOptions {
  maxBatch: number;
  maxWaitMs: number;
}

export class Batcher<In, Out> {
  private readonly run: (items: In[]) => Promise<Out[]>;
  private readonly opts: BatcherOptions;
  private queue: { item: In; resolve: (o: Out) => void; reject: (e: unknown) => void }[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  /** Batches run so far and the largest (for /health and benchmarks): counters, as a server runs for months. */
  readonly stats = { batches: 0, items: 0, largest: 0 };

  constructor(run: (items: In[]) => Promise<Out[]>, opts: BatcherOptions) {
    this.run = run;
    this.opts = opts;
  }

  submit(item: In): Promise<Out> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.queue.length >= this.opts.maxBatch) return void this.flush();
    this.timer ??= setTimeout(() => this.flush(), this.opts.maxWaitMs);
  }

  private async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.running) return;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    if (batch.length === 0) return;
    this.running = true;
    this.stats.batches++;
    this.stats.items += batch.length;
    this.stats.largest = Math.max(this.stats.largest, batch.length);
    try {
      const out = await this.run(batch.map((b) => b.item));
      batch.forEach((b, i) => b.resolve(out[i]!));
    } catch (e) {
      for (const b of batch) b.reject(e);
    } finally {
      this.running = false;
      this.schedule();
    }
  }
}
