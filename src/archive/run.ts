/** What backup, restore and verify do around their pipeline: a linked abort signal and a progress ticker. */

export interface Progress {
  readonly phase: string;
  /** Bytes read from the source (pg_dump output for a backup, archive bytes for a restore). */
  readonly bytesIn: number;
  /** Bytes written to the destination. */
  readonly bytesOut: number;
  /** Bytes of the source expected in all, when known (restores: the archive size). */
  readonly totalBytes?: number;
  /** A guess at totalBytes when it is not known (backups: the database's size on disk). */
  readonly estimatedBytes?: number;
  readonly elapsedMs: number;
  /** bytesIn per second over the whole run. */
  readonly rate: number;
}

/** The part of a job's context a run needs (jobs/context.ts's JobContext has it). */
export interface RunContext {
  readonly signal: AbortSignal;
  readonly progress: (p: Progress) => void;
}

/** The byte counts a run reports; read once a second, so the pipeline does no extra work per byte. */
export interface Meter {
  readonly phase: string;
  readonly totalBytes?: number;
  readonly estimatedBytes?: number;
  bytesIn(): number;
  bytesOut(): number;
}

export interface JobRun {
  /** Aborted when the job's signal is, or by abort(): give it to the pipeline and the child processes. */
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
  /** Reports progress now, whatever the throttle says (at the end of a run). */
  report(): void;
}

/** Calls `report` at most every `intervalMs`, and once more at the end when forced. */
export function throttle<T>(
  report: (value: T) => void,
  intervalMs = 1000,
): (value: T, force?: boolean) => void {
  let last = 0;
  return (value, force = false) => {
    const now = Date.now();
    if (force || now - last >= intervalMs) {
      last = now;
      report(value);
    }
  };
}

/**
 * Runs `fn` with a signal linked to the job's (a local abort, e.g. after a failed write, must not abort the job's
 * own signal) and a progress report every second; both are undone when `fn` settles.
 */
export async function withJobRun<T>(
  ctx: RunContext,
  meter: Meter,
  fn: (run: JobRun) => Promise<T>,
): Promise<T> {
  const abort = new AbortController();
  const onAbort = (): void => abort.abort(ctx.signal.reason);
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  const send = throttle(ctx.progress);
  const t0 = Date.now();
  const tick = (force = false): void => {
    const elapsedMs = Date.now() - t0;
    const bytesIn = meter.bytesIn();
    send(
      {
        phase: meter.phase,
        bytesIn,
        bytesOut: meter.bytesOut(),
        ...(meter.totalBytes !== undefined ? { totalBytes: meter.totalBytes } : {}),
        ...(meter.estimatedBytes !== undefined ? { estimatedBytes: meter.estimatedBytes } : {}),
        elapsedMs,
        rate: elapsedMs > 0 ? (bytesIn * 1000) / elapsedMs : 0,
      },
      force,
    );
  };
  const ticker = setInterval(tick, 1000);
  try {
    return await fn({
      signal: abort.signal,
      abort: (reason) => abort.abort(reason),
      report: () => tick(true),
    });
  } finally {
    clearInterval(ticker);
    ctx.signal.removeEventListener('abort', onAbort);
  }
}
