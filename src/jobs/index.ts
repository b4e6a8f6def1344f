import type { JobKind } from '../queues.js';
import { createBackupJob } from './backup.js';
import type { JobContext, JobDeps } from './context.js';

export type JobFunction = (input: never, ctx: JobContext) => Promise<unknown>;

/** Every job function, by queue. The worker and `--in-process` both run these. */
export function createJobs(
  deps: JobDeps,
): Partial<Record<JobKind, (input: unknown, ctx: JobContext) => Promise<unknown>>> {
  const backup = createBackupJob(deps);
  return {
    backup: (input, ctx) => backup(input as Parameters<typeof backup>[0], ctx),
  };
}
