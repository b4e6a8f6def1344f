import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Config } from '../config.js';
import { errorMessage, isRecoverable } from '../errors.js';
import { createJobs } from '../jobs/index.js';
import type { Logger } from '../logger.js';
import { JOB_KINDS, redisConnection, type JobKind } from '../queues.js';
import type { Storage } from '../storage/index.js';

export interface WorkerOptions {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  /** Queues to consume (default: every kind this build has a job for). */
  readonly kinds?: readonly JobKind[];
}

export interface PgshelfWorker {
  readonly workers: readonly Worker[];
  /** Resolves once every queue's connection is up (and 'worker started' has been logged). */
  readonly ready: Promise<void>;
  /** Jobs running now. */
  readonly active: () => number;
  /** Lets running jobs finish within the grace period, then aborts them; resolves when every job has settled. */
  close(graceMs?: number): Promise<void>;
  /** Aborts every running job now (kills pg_dump/psql, aborts uploads). Synchronous. */
  abortAll(reason?: string): void;
}

/** BullMQ adapter: one Worker per queue, each turning a BullMQ job into a call of the plain job function. */
export function startWorker(options: WorkerOptions): PgshelfWorker {
  const { config, storage, logger } = options;
  const jobs = createJobs({ config, storage, logger });
  const running = new Map<string, AbortController>();
  const kinds = (options.kinds ?? JOB_KINDS).filter((k) => jobs[k] !== undefined);

  const workers = kinds.map((kind) => {
    const run = jobs[kind]!;
    const processor = async (job: Job): Promise<unknown> => {
      const abort = new AbortController();
      const key = `${kind}:${job.id ?? '?'}:${job.attemptsMade}`;
      running.set(key, abort);
      const log = logger.child({ queue: kind, jobId: job.id, attempt: job.attemptsMade + 1 });
      try {
        return await run(job.data, {
          signal: abort.signal,
          logger: log,
          jobId: `${config.queuePrefix}:${kind}:${job.id ?? '?'}`,
          progress: (p) => {
            job
              .updateProgress({ ...p })
              .catch((err: unknown) => log.debug({ err }, 'progress update failed'));
          },
        });
      } catch (err) {
        log.error({ err: errorMessage(err) }, `${kind} job failed`);
        // Retrying cannot fix bad settings, a missing database or a corrupt archive: fail now, keep the reason.
        if (!isRecoverable(err)) throw new UnrecoverableError(errorMessage(err));
        throw err;
      } finally {
        running.delete(key);
      }
    };
    const worker = new Worker(kind, processor, {
      connection: redisConnection(config),
      prefix: config.queuePrefix,
      concurrency: config.concurrency,
      // The lock is renewed every lockDuration/2 while the job runs; a job whose worker died is found stalled
      // and run again within about one lockDuration.
      lockDuration: config.lockDurationMs,
      stalledInterval: Math.max(1000, Math.floor(config.lockDurationMs / 2)),
      maxStalledCount: 2,
    });
    worker.on('error', (err) => logger.error({ err: errorMessage(err), queue: kind }, 'worker error'));
    return worker;
  });
  const ready = Promise.all(workers.map((w) => w.waitUntilReady())).then(
    () =>
      logger.info(
        { queues: kinds, concurrency: config.concurrency, prefix: config.queuePrefix },
        'worker started',
      ),
    (err: unknown) => logger.error({ err: errorMessage(err) }, 'worker cannot reach Redis'),
  );

  const abortAll = (reason = 'worker shutting down'): void => {
    for (const controller of running.values()) controller.abort(new Error(reason));
  };

  let closing: Promise<void> | undefined;
  return {
    workers,
    ready: ready.then(() => undefined),
    active: () => running.size,
    abortAll,
    close: (graceMs = config.shutdownGraceMs) => {
      closing ??= (async () => {
        const closed = Promise.all(workers.map((w) => w.close()));
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<'expired'>((resolve) => {
          timer = setTimeout(() => resolve('expired'), graceMs);
        });
        const first = await Promise.race([closed.then(() => 'closed' as const), expired]);
        clearTimeout(timer);
        if (first === 'expired') {
          logger.warn({ active: running.size, graceMs }, 'grace period over: aborting running jobs');
          abortAll('worker shut down before the job finished; it will be retried');
          await closed;
        }
        logger.info('worker stopped');
      })();
      return closing;
    },
  };
}
