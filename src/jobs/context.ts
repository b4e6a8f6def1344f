import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import type { Storage } from '../storage/index.js';
import type { Progress } from '../archive/run.js';

export type { Progress };

/** What every job needs from the outside world; the job knows nothing of BullMQ. */
export interface JobDeps {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  /** Injectable clock, for tests. */
  readonly now?: () => Date;
}

export interface JobContext {
  /** Aborts the job: kills child processes, aborts uploads, cleans up. */
  readonly signal: AbortSignal;
  readonly progress: (p: Progress) => void;
  readonly logger: Logger;
  /** Stable across retries of one queued job (e.g. `restore:42`); undefined when run in-process. */
  readonly jobId?: string;
}
