import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import type { Storage } from '../storage/index.js';

/** What every job needs from the outside world; the job knows nothing of BullMQ. */
export interface JobDeps {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  /** Injectable clock, for tests. */
  readonly now?: () => Date;
}

export interface Progress {
  readonly phase: string;
  /** Bytes read from the source (pg_dump output for a backup, archive bytes for a restore). */
  readonly bytesIn: number;
  /** Bytes written to the destination. */
  readonly bytesOut: number;
  /** Bytes of the source expected in all, when known (restores: the archive size). */
  readonly totalBytes?: number;
  readonly elapsedMs: number;
  /** bytesIn per second over the whole run. */
  readonly rate: number;
}

export interface JobContext {
  /** Aborts the job: kills child processes, aborts uploads, cleans up. */
  readonly signal: AbortSignal;
  readonly progress: (p: Progress) => void;
  readonly logger: Logger;
  /** Stable across retries of one queued job (e.g. `restore:42`); undefined when run in-process. */
  readonly jobId?: string;
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
