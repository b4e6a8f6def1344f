import type { JobKind } from '../queues.js';
import { createBackupJob, type BackupInput } from './backup.js';
import type { JobContext, JobDeps } from './context.js';
import { createDrillJob, type DrillInput } from './drill.js';
import { createPruneJob, type PruneInput } from './prune.js';
import { createRestoreJob, type RestoreInput } from './restore.js';

export type AnyJob = (input: unknown, ctx: JobContext) => Promise<unknown>;

/** Every job function, by queue. The worker and `--in-process` both run these. */
export function createJobs(deps: JobDeps): Partial<Record<JobKind, AnyJob>> {
  const backup = createBackupJob(deps);
  const restore = createRestoreJob(deps);
  const drill = createDrillJob({ ...deps, restore });
  const prune = createPruneJob(deps);
  return {
    backup: (input, ctx) => backup(input as BackupInput, ctx),
    restore: (input, ctx) => restore(input as RestoreInput, ctx),
    drill: (input, ctx) => drill(input as DrillInput, ctx),
    prune: (input, ctx) => prune(input as PruneInput, ctx),
  };
}
