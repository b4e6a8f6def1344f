/**
 * Every job, by kind: its declaration (beside it in its own file) and its run function built from the deps. The
 * worker and `--in-process` both run these; the one wiring between jobs is here (drill gets restore).
 */
import { backupJob } from './backup.js';
import type { JobDeps } from './context.js';
import type { JobFn, JobKind, JobPolicy } from './definition.js';
import { drillJob } from './drill.js';
import { pruneJob } from './prune.js';
import { restoreJob } from './restore.js';

export { JOB_KINDS, type JobKind, type JobPolicy } from './definition.js';

export type AnyJob = JobFn<unknown, unknown>;

/** A job's declaration with its run function, inputs and results no longer typed (they come from the queue). */
export interface RegisteredJob extends JobPolicy {
  readonly run: AnyJob;
}

export type JobRegistry = Readonly<Record<JobKind, RegisteredJob>>;

/** The declarations alone, for what needs no deps (queue options, follow-up queues). */
export const JOB_POLICIES: Readonly<Record<JobKind, JobPolicy>> = {
  backup: backupJob,
  restore: restoreJob,
  prune: pruneJob,
  drill: drillJob,
};

function register<I, R>(policy: JobPolicy<R>, run: JobFn<I, R>): RegisteredJob {
  return { ...(policy as JobPolicy), run: (input, ctx) => run(input as I, ctx) };
}

export function createRegistry(deps: JobDeps): JobRegistry {
  const restore = restoreJob.create(deps);
  return {
    backup: register(backupJob, backupJob.create(deps)),
    restore: register(restoreJob, restore),
    prune: register(pruneJob, pruneJob.create(deps)),
    drill: register(drillJob, drillJob.create({ ...deps, restore })),
  };
}

/** Attempts in all for a job of `kind`: its declaration's, else PGSHELF_ATTEMPTS. */
export function jobAttempts(kind: JobKind, configured: number): number {
  return JOB_POLICIES[kind].attempts ?? configured;
}
