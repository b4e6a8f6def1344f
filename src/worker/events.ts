/**
 * What happens to the jobs a worker runs, as typed events: the worker emits them, the log (log-events.ts) and,
 * later, metrics and notifications subscribe. A subscriber that throws never fails the job.
 */
import type { Progress } from '../jobs/context.js';
import type { JobKind } from '../jobs/registry.js';

interface JobEventBase {
  readonly kind: JobKind;
  /** The BullMQ job id (as the CLI prints it). */
  readonly jobId: string;
  /** The database the job is for; undefined when its data names none and the worker has no default. */
  readonly database: string | undefined;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

interface JobEnded extends JobEventBase {
  /** Since the job started running (or since the worker took it, when it failed before starting). */
  readonly durationMs: number;
}

interface JobError extends JobEnded {
  readonly error: unknown;
  /** The error's message, as logged. */
  readonly message: string;
}

export interface JobEventMap {
  /** The job took its guards (if any) and its run function was called. */
  'job:started': JobEventBase;
  'job:progress': JobEventBase & { readonly progress: Progress };
  /** It could not take a guard: put back as delayed, no attempt used. */
  'job:waiting': JobEventBase & { readonly reason: 'database-busy' | 'host-full'; readonly message: string };
  'job:succeeded': JobEnded & { readonly result: unknown };
  /** Failed, and another attempt will follow after the backoff. */
  'job:retrying': JobError & { readonly attempts: number };
  /** Failed for good: last attempt, or an error a retry cannot fix. */
  'job:failed': JobError & { readonly attempts: number };
}

export type JobEventName = keyof JobEventMap;
type Listener<K extends JobEventName> = (event: JobEventMap[K]) => void;

export class JobEvents {
  private readonly listeners = new Map<JobEventName, Set<(event: never) => void>>();

  /** @param onListenerError what to do when a subscriber throws (the job goes on regardless). */
  constructor(
    private readonly onListenerError: (err: unknown, name: JobEventName) => void = () => undefined,
  ) {}

  /** Subscribes; returns the unsubscribe function. */
  on<K extends JobEventName>(name: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  emit<K extends JobEventName>(name: K, event: JobEventMap[K]): void {
    for (const listener of this.listeners.get(name) ?? []) {
      try {
        (listener as Listener<K>)(event);
      } catch (err) {
        this.onListenerError(err, name);
      }
    }
  }
}
