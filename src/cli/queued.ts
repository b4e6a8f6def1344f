/** The queue side of a command: put the job on its queue and wait for a worker, showing what happens to it. */
import { Job, type Queue, type QueueEvents } from 'bullmq';
import { CommandFailed, errorMessage, exitCodeFor } from '../errors.js';
import type { Progress } from '../jobs/context.js';
import type { JobKind } from '../queues.js';
import type { ProgressLine } from './progress.js';

/** States in which no worker has taken the job yet, so removing it means it never runs. */
const NOT_STARTED = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children']);

class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
  }
}

/**
 * SIGINT and SIGTERM while a command puts a job on a queue and waits for it. Taken before the job is added: a
 * signal that comes while it is being added, or just after, must still take it off the queue (a handler
 * installed after the "no worker is running" line left a window in which Ctrl-C killed the command and left
 * the job queued). Before the add starts there is nothing to take back: a signal calls `beforeAdd`, which ends
 * the command (a Redis that stopped answering must not hold it). From the add on, the first signal interrupts
 * the wait; a second one ends the command at once, without waiting for Redis to answer.
 */
export class QueueInterrupts {
  private first: NodeJS.Signals | undefined;
  private adding = false;
  private reject: ((err: Interrupted) => void) | undefined;
  /** Rejects with the first signal; never resolves. */
  readonly interrupted: Promise<never>;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (!this.adding) return this.beforeAdd(signal);
    if (this.first) {
      process.stderr.write(`pgshelf: ${signal} again: exiting without waiting for the queue\n`);
      process.exit(exitCodeFor(signal));
    }
    this.first = signal;
    this.reject?.(new Interrupted(signal));
  };

  constructor(private readonly beforeAdd: (signal: NodeJS.Signals) => never) {
    this.interrupted = new Promise<never>((_, reject) => {
      this.reject = reject;
    });
    this.interrupted.catch(() => undefined); // raced in waitForJob
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  /** Called just before the job is added: from here a signal takes the job back off the queue. */
  addStarts(): void {
    this.adding = true;
  }

  close(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

/**
 * Waits until a worker finishes `job`, relaying its progress, its retries ("attempt 2 of 3 after: ...") and a
 * restart after its worker stopped. Ctrl-C (or SIGTERM) removes the job when no worker has started it, or says
 * that it goes on; the command then exits 130 either way (143 for SIGTERM).
 */
export async function waitForJob<R>(
  kind: JobKind,
  queue: Queue,
  events: QueueEvents,
  job: Job,
  progress: ProgressLine,
  interrupts: QueueInterrupts,
): Promise<R> {
  const id = String(job.id);
  let attemptsSeen = 0;
  const onProgress = ({ jobId, data }: { jobId: string; data: unknown }): void => {
    if (jobId === id && data && typeof data === 'object' && 'phase' in data)
      progress.update(data as Progress);
  };
  // A failed attempt that will be retried moves the job to delayed (or straight back to waiting).
  const onRetry = ({ jobId, prev }: { jobId: string; prev?: string }): void => {
    if (jobId !== id || (prev !== undefined && prev !== 'active')) return;
    Job.fromId(queue, id).then(
      (j) => {
        // A backup put back to wait for another one uses no attempt: only a new failure is worth a line.
        if (!j || j.attemptsMade <= attemptsSeen) return;
        attemptsSeen = j.attemptsMade;
        progress.note(
          `${kind} job ${id}: attempt ${j.attemptsMade + 1} of ${j.opts.attempts ?? 1} after: ${j.failedReason}`,
        );
      },
      () => undefined,
    );
  };
  const onStalled = ({ jobId }: { jobId: string }): void => {
    if (jobId === id)
      progress.note(
        `${kind} job ${id}: its worker stopped while running it; it starts again on another worker`,
      );
  };
  events.on('progress', onProgress);
  events.on('delayed', onRetry);
  events.on('waiting', onRetry);
  events.on('stalled', onStalled);
  const finished = job.waitUntilFinished(events);
  finished.catch(() => undefined); // settled below, or abandoned on Ctrl-C
  try {
    return (await Promise.race([finished, interrupts.interrupted])) as R;
  } catch (err) {
    if (err instanceof Interrupted) throw await leave(kind, queue, id, exitCodeFor(err.signal));
    const failed = await Job.fromId(queue, id);
    throw new CommandFailed(`${kind} job ${id} failed: ${failed?.failedReason ?? errorMessage(err)}`, 1);
  } finally {
    events.off('progress', onProgress);
    events.off('delayed', onRetry);
    events.off('waiting', onRetry);
    events.off('stalled', onStalled);
    progress.done();
  }
}

/** After Ctrl-C: take the job off the queue if it has not started, else say plainly where it stands. */
async function leave(kind: JobKind, queue: Queue, id: string, exitCode: number): Promise<CommandFailed> {
  const job = await Job.fromId(queue, id);
  const state = job ? await job.getState() : 'unknown';
  if (job && NOT_STARTED.has(state)) {
    try {
      await job.remove();
      return new CommandFailed(
        `interrupted: removed ${kind} job ${id} from the queue (${state}); no worker had started it`,
        exitCode,
      );
    } catch {
      // A worker took it in the meantime (a running job is locked): it goes on, as below.
    }
  }
  const where = !job
    ? 'is no longer in the queue'
    : state === 'completed' || state === 'failed'
      ? `has already ${state}`
      : 'is running on a worker and goes on there';
  return new CommandFailed(
    `interrupted: ${kind} job ${id} ${where}; find it in the "${kind}" queue by its id`,
    exitCode,
  );
}
