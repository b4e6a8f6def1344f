/**
 * Keeps a value fresh for a while and refreshes it once however many readers ask (single flight): a Prometheus
 * scrape every 15 s and a dashboard open in three tabs list the bucket once per TTL, not once per request.
 */

export interface Snapshot<T> {
  /** The latest value collected, or undefined while none has been. */
  readonly value: T | undefined;
  /** When `value` was collected. */
  readonly collectedAt: Date | undefined;
  /** Why the latest refresh failed, when it did (then `value` is the one before, if any). */
  readonly error: string | undefined;
  readonly attemptedAt: Date | undefined;
}

export class Refreshing<T> {
  private snapshot: Snapshot<T> = {
    value: undefined,
    collectedAt: undefined,
    error: undefined,
    attemptedAt: undefined,
  };
  private inFlight: Promise<Snapshot<T>> | undefined;

  constructor(
    private readonly collect: (now: Date) => Promise<T>,
    /** How long a value (or a failure) is served before the next request refreshes it. */
    private readonly ttlMs: number,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** The current snapshot, refreshed first when older than the TTL (one refresh at a time). */
  async get(): Promise<Snapshot<T>> {
    const at = this.snapshot.attemptedAt;
    if (at && this.clock().getTime() - at.getTime() < this.ttlMs) return this.snapshot;
    return this.refresh();
  }

  /** Refreshes now (joining one under way): after a change the caller made, e.g. a job it queued. */
  refresh(): Promise<Snapshot<T>> {
    this.inFlight ??= this.run().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  /** What is known, without refreshing. */
  peek(): Snapshot<T> {
    return this.snapshot;
  }

  private async run(): Promise<Snapshot<T>> {
    const now = this.clock();
    try {
      const value = await this.collect(now);
      this.snapshot = { value, collectedAt: now, error: undefined, attemptedAt: now };
    } catch (err) {
      this.snapshot = {
        ...this.snapshot,
        error: err instanceof Error ? err.message : String(err),
        attemptedAt: now,
      };
    }
    return this.snapshot;
  }
}

/** `promise`, or a rejection naming `what` after `ms` (the promise itself is left to settle on its own). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms / 1000} s`)), ms);
  });
  // A late rejection of the abandoned promise must not surface as an unhandled one.
  promise.catch(() => undefined);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
