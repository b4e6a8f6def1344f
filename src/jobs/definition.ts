/**
 * What a job declares about itself, beside its factory: its queue, what it must not run beside, how often it is
 * tried, and what follows it. The worker applies these; the registry (registry.ts) collects them.
 */
import type { JobContext, JobDeps } from './context.js';

/** One queue per kind of job, all under PGSHELF_QUEUE_PREFIX. */
export const JOB_KINDS = ['backup', 'restore', 'prune', 'drill'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export type JobFn<I, R> = (input: I, ctx: JobContext) => Promise<R>;

/** Guards held in Redis while the job runs; a job that cannot take them waits (no attempt is used). */
export interface Excludes {
  /** The database guard: one such job per database at a time. `waiting` is logged while it waits for it. */
  readonly database?: { readonly waiting: string };
  /** Also one of PGSHELF_HOST_CONCURRENCY places on the database's server (taken with the database guard). */
  readonly host?: boolean;
}

/** A job enqueued after each success of this one, for the same database. */
export interface FollowUp<R> {
  readonly kind: JobKind;
  /** What makes the follow-up's job id unique (e.g. the backup id); the queued job's own id when undefined. */
  key(result: R): string | undefined;
}

/** Everything about a job but how to build it: what the worker and the queues need. */
export interface JobPolicy<R = unknown> {
  readonly kind: JobKind;
  /** What the job does to a database, for messages ("this worker does not back up database x"). */
  readonly acts?: string;
  readonly excludes?: Excludes;
  /** Attempts in all; PGSHELF_ATTEMPTS when undefined. */
  readonly attempts?: number;
  readonly followedBy?: FollowUp<R>;
}

export interface JobDefinition<I, R, D extends JobDeps = JobDeps> extends JobPolicy<R> {
  readonly create: (deps: D) => JobFn<I, R>;
}

/** Identity, for type inference: the result type of `create` types `followedBy`. */
export function defineJob<I, R, D extends JobDeps = JobDeps>(
  definition: JobDefinition<I, R, D>,
): JobDefinition<I, R, D> {
  return definition;
}
