/** The JobContext a test passes to a job run in-process. */
import type { JobContext, Progress } from '../../src/jobs/context.js';
import type { Logger } from '../../src/logger.js';
import { silentLogger } from '../../src/logger.js';

export interface ContextOptions {
  /** Defaults to a signal that never aborts. */
  readonly signal?: AbortSignal;
  /** Defaults to a logger that writes nothing. */
  readonly logger?: Logger;
  /** Every progress report is pushed here; dropped when not given. */
  readonly progress?: Progress[];
  /** As a queued job has it (e.g. `restore:42`); absent, as when run in-process. */
  readonly jobId?: string;
}

export function ctx(options: ContextOptions = {}): JobContext {
  const { progress } = options;
  return {
    signal: options.signal ?? new AbortController().signal,
    logger: options.logger ?? silentLogger(),
    progress: progress ? (p) => progress.push(p) : () => undefined,
    ...(options.jobId !== undefined ? { jobId: options.jobId } : {}),
  };
}
