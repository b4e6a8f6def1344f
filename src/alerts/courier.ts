/**
 * Delivers alerts over HTTP, never in a job's way: a bounded in-memory queue per process, a few requests at once,
 * a timeout per request, retries with exponential backoff, and a log line (URL masked) for what could not be
 * delivered. send() returns at once; drain() gives what is queued a bounded time at shutdown.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { maskSecretUrl } from '../url.js';

export interface CourierOptions {
  readonly logger: Logger;
  /** Most time one request may take (default 10 s). */
  readonly timeoutMs?: number;
  /** Tries per delivery (default 5). */
  readonly tries?: number;
  /** Wait before the first retry (default 2 s); each later one waits twice as long. */
  readonly backoffMs?: number;
  /** Deliveries held at most; past it the oldest is dropped, with a warning (default 1,000). */
  readonly maxQueued?: number;
  /** Requests in flight at once to one receiver (scheme, host and port; default 2). */
  readonly concurrency?: number;
}

export interface Parcel {
  readonly url: string;
  readonly method: 'POST' | 'GET';
  readonly body?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** What it is, for log lines: `backup.failed`, `ping fail`. */
  readonly what: string;
}

interface Pending extends Parcel {
  tries: number;
  lastError?: string;
}

/** Answers worth another try: a timeout, a rate limit, a server error. Other 4xx mean the request itself is wrong. */
const retryable = (status: number): boolean => status === 408 || status === 429 || status >= 500;

const origin = (url: string): string => {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
};

/**
 * Each receiver has its own lane (a few requests at once), so one that never answers holds up only its own
 * alerts, never the others'.
 */
export class Courier {
  private readonly queue: Pending[] = [];
  private readonly busy = new Map<string, number>();
  private readonly waiting = new Map<NodeJS.Timeout, Pending>();
  private readonly inflight = new Map<AbortController, Promise<void>>();
  private readonly idleWaiters = new Set<() => void>();
  private closed = false;
  private readonly timeoutMs: number;
  private readonly tries: number;
  private readonly backoffMs: number;
  private readonly maxQueued: number;
  private readonly concurrency: number;
  /** Deliveries that succeeded, and that were given up (after every try, dropped or cut off at shutdown). */
  delivered = 0;
  failed = 0;

  constructor(private readonly options: CourierOptions) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.tries = options.tries ?? 5;
    this.backoffMs = options.backoffMs ?? 2_000;
    this.maxQueued = options.maxQueued ?? 1_000;
    this.concurrency = options.concurrency ?? 2;
  }

  /** Queues a delivery and returns at once. */
  send(parcel: Parcel): void {
    if (this.closed) {
      this.giveUp({ ...parcel, tries: 0 }, 'the process is shutting down');
      return;
    }
    if (this.queue.length >= this.maxQueued) {
      this.giveUp(this.queue.shift()!, `more than ${this.maxQueued} alerts waiting: dropped the oldest`);
    }
    this.queue.push({ ...parcel, tries: 0 });
    this.pump();
  }

  /** Nothing queued, waiting for a retry or in flight. */
  get idle(): boolean {
    return this.queue.length === 0 && this.waiting.size === 0 && this.inflight.size === 0;
  }

  /**
   * Stops taking new deliveries and gives the queued ones (retries waiting for their backoff go now) at most
   * `graceMs`; then aborts what is in flight and logs what was not delivered.
   */
  async drain(graceMs: number): Promise<void> {
    this.closed = true;
    for (const [timer, p] of this.waiting) {
      clearTimeout(timer);
      this.queue.push(p);
    }
    this.waiting.clear();
    this.pump();
    if (this.idle) return;
    let timer: NodeJS.Timeout | undefined;
    let onIdle: (() => void) | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idleWaiters.add((onIdle = resolve))),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
    if (onIdle) this.idleWaiters.delete(onIdle);
    for (const p of this.queue.splice(0)) this.giveUp(p, 'not sent before shutdown');
    const cut = [...this.inflight.entries()];
    for (const [c] of cut) c.abort(new Error('shutting down'));
    // An aborted request settles at once: wait for it, so that it is logged before this returns.
    await Promise.all(cut.map(([, attempt]) => attempt));
  }

  private pump(): void {
    for (let i = 0; i < this.queue.length;) {
      const p = this.queue[i]!;
      const lane = origin(p.url);
      const busy = this.busy.get(lane) ?? 0;
      if (busy >= this.concurrency) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      this.busy.set(lane, busy + 1);
      const controller = new AbortController();
      const attempt = this.attempt(p, controller).finally(() => {
        this.inflight.delete(controller);
        const left = (this.busy.get(lane) ?? 1) - 1;
        if (left > 0) this.busy.set(lane, left);
        else this.busy.delete(lane);
        this.pump();
        if (this.idle) for (const resolve of this.idleWaiters) resolve();
      });
      this.inflight.set(controller, attempt);
    }
  }

  private async attempt(p: Pending, controller: AbortController): Promise<void> {
    p.tries++;
    const timer = setTimeout(
      () => controller.abort(new Error(`no answer within ${this.timeoutMs / 1000} s`)),
      this.timeoutMs,
    );
    try {
      const res = await fetch(p.url, {
        method: p.method,
        ...(p.body !== undefined ? { body: p.body } : {}),
        headers: { 'User-Agent': 'pgshelf', ...p.headers },
        signal: controller.signal,
      });
      // Read (and drop) the answer so the connection is freed; bounded by the same timeout.
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) {
        this.delivered++;
        this.options.logger.debug({ url: maskSecretUrl(p.url), what: p.what, tries: p.tries }, 'alert sent');
        return;
      }
      p.lastError = `HTTP ${res.status}`;
      if (!retryable(res.status)) {
        this.giveUp(p, `the receiver answered HTTP ${res.status}`);
        return;
      }
    } catch (err) {
      // A timeout says so; fetch's own "fetch failed" hides the reason (ECONNREFUSED...) in its cause.
      const reason: unknown = controller.signal.aborted
        ? controller.signal.reason
        : ((err as { cause?: unknown }).cause ?? err);
      p.lastError = errorMessage(reason);
      if (this.closed && controller.signal.aborted) {
        this.giveUp(p, 'cut off at shutdown');
        return;
      }
    } finally {
      clearTimeout(timer);
    }
    this.retryLater(p);
  }

  private retryLater(p: Pending): void {
    if (p.tries >= this.tries) {
      this.giveUp(p, `${p.tries} tries failed`);
      return;
    }
    if (this.closed) {
      this.queue.push(p);
      return;
    }
    const delay = this.backoffMs * 2 ** (p.tries - 1);
    const timer = setTimeout(() => {
      this.waiting.delete(timer);
      this.queue.push(p);
      this.pump();
    }, delay);
    this.waiting.set(timer, p);
  }

  private giveUp(p: Pending, why: string): void {
    this.failed++;
    this.options.logger.warn(
      { url: maskSecretUrl(p.url), what: p.what, tries: p.tries, lastError: p.lastError ?? null },
      `alert not delivered to ${maskSecretUrl(p.url)} (${p.what}): ${why}` +
        (p.lastError ? `; last error: ${p.lastError}` : ''),
    );
  }
}
