import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { resolveTarget, storageIdentity, type Config } from '../config/index.js';
import { ConfigError, errorMessage, isRecoverable } from '../errors.js';
import { createJobs } from '../jobs/index.js';
import type { Logger } from '../logger.js';
import { warnClockSkew } from '../postgres/server.js';
import { createQueue, JOB_KINDS, RedisHealth, redisConnection, retryDelay, type JobKind } from '../queues.js';
import type { Storage } from '../storage/index.js';
import { BackupGuards } from './locks.js';

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

/** How long a backup that must wait (same database running, server at its limit) waits before trying again. */
const WAIT_MS = 10_000;

/** What a queued job says it is for: set by `pgshelf` commands from their own settings. */
interface JobTarget {
  readonly database?: unknown;
  readonly storage?: unknown;
}

/**
 * A job runs with this worker's settings, so it runs only when they are the ones the command asked for: the same
 * storage, and a database this worker knows. Anything else fails at once, naming both sides, never silently
 * running on something else. (Jobs without these fields, from older commands, mean the worker's own.)
 */
export function checkJobTarget(config: Config, kind: JobKind, data: JobTarget): void {
  const own = storageIdentity(config.storage);
  if (typeof data.storage === 'string' && data.storage !== own) {
    throw new ConfigError(
      `this worker writes to ${own}; the job asked for ${data.storage}: start a worker with ` +
        `PGSHELF_STORAGE set as the command's (and the same S3_ENDPOINT), or run the ${kind} with --in-process`,
    );
  }
  if (typeof data.database === 'string' && !config.databases.some((d) => d.name === data.database)) {
    const known = config.databases.map((d) => d.name).join(', ') || 'none';
    throw new ConfigError(
      `this worker does not ${kind === 'backup' ? 'back up' : `${kind} backups of`} database ` +
        `"${data.database}": it knows ${known} — start a worker with POSTGRES_DB=${data.database} or list it ` +
        'in PGSHELF_CONFIG',
    );
  }
}

/** BullMQ adapter: one Worker per queue, each turning a BullMQ job into a call of the plain job function. */
export function startWorker(options: WorkerOptions): PgshelfWorker {
  const { config, storage, logger } = options;
  const jobs = createJobs({ config, storage, logger });
  const running = new Map<string, AbortController>();
  const kinds = (options.kinds ?? JOB_KINDS).filter((k) => jobs[k] !== undefined);

  const health = new RedisHealth(config.redisUrl, logger);
  // The guards expire with the job lock: a backup whose worker died is run again after about
  // PGSHELF_LOCK_DURATION, and must not then wait out a dead worker's guard (it was a fixed 60 s).
  const guards = new BackupGuards(
    redisConnection(config),
    config.queuePrefix,
    config.hostConcurrency,
    config.lockDurationMs,
  );
  const pruneQueue = createQueue(config, 'prune');
  health.watchBull(pruneQueue);

  /**
   * A backup waits while another dump of the same database runs, or while the server already has
   * PGSHELF_HOST_CONCURRENCY dumps running: the job is put back as delayed (no attempt is used) and tried again.
   */
  const guarded = async (
    kind: 'backup' | 'prune',
    job: Job,
    token: string | undefined,
    log: Logger,
    fn: () => Promise<unknown>,
  ) => {
    const target = resolveTarget(config, (job.data as { database?: string }).database);
    // Prune takes the database lock only (no dump, no server slot), so it never deletes beside a running backup.
    const guard =
      kind === 'prune'
        ? await guards.acquireDatabase(target.name)
        : await guards.acquire(target.name, target.postgres.host, target.postgres.port);
    if (!guard.ok) {
      log.info(
        { database: target.name, reason: guard.reason },
        guard.reason === 'database-busy'
          ? kind === 'prune'
            ? 'a backup or prune of this database is running: prune waiting'
            : 'another backup of this database is running: waiting'
          : `the server already runs ${config.hostConcurrency} dumps: waiting`,
      );
      await job.moveToDelayed(Date.now() + WAIT_MS, token);
      throw new DelayedError();
    }
    try {
      const result = await fn();
      if (kind === 'prune') return result;
      // Retention runs after every successful backup, as its own job.
      const id = (result as { id?: string }).id ?? String(job.id);
      await pruneQueue
        .add(
          'prune',
          { database: target.name, storage: storageIdentity(config.storage) },
          { jobId: `prune--${encodeURIComponent(target.name)}--${id}` },
        )
        .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'could not enqueue the prune job'));
      return result;
    } finally {
      await guard.release();
    }
  };

  const workers = kinds.map((kind) => {
    const run = jobs[kind]!;
    const processor = async (job: Job, token?: string): Promise<unknown> => {
      const abort = new AbortController();
      const key = `${kind}:${job.id ?? '?'}:${job.attemptsMade}`;
      running.set(key, abort);
      const log = logger.child({ queue: kind, jobId: job.id, attempt: job.attemptsMade + 1 });
      try {
        checkJobTarget(config, kind, job.data as JobTarget);
        const call = (): Promise<unknown> =>
          run(job.data, {
            signal: abort.signal,
            logger: log,
            jobId: `${config.queuePrefix}:${kind}:${job.id ?? '?'}`,
            progress: (p) => {
              job
                .updateProgress({ ...p })
                .catch((err: unknown) => log.debug({ err }, 'progress update failed'));
            },
          });
        return await (kind === 'backup' || kind === 'prune' ? guarded(kind, job, token, log, call) : call());
      } catch (err) {
        if (err instanceof DelayedError) throw err;
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
      // Jobs ask for backoff type 'pgshelf' (older ones for 'exponential', which BullMQ computes itself).
      settings: { backoffStrategy: (attemptsMade: number) => retryDelay(config, attemptsMade) },
    });
    health.watchBull(worker, (err) => logger.error({ err: errorMessage(err), queue: kind }, 'worker error'));
    return worker;
  });
  const ready = Promise.all(workers.map((w) => w.waitUntilReady())).then(
    () =>
      logger.info(
        {
          queues: kinds,
          concurrency: config.concurrency,
          prefix: config.queuePrefix,
          // What it will run: jobs for other storage or other databases are refused (checkJobTarget).
          storage: storageIdentity(config.storage),
          databases: config.databases.map((d) => d.name),
        },
        `worker started: storage ${storageIdentity(config.storage)}, databases ` +
          config.databases.map((d) => d.name).join(', '),
      ),
    (err: unknown) => logger.error({ err: errorMessage(err) }, 'worker cannot reach Redis'),
  );

  // A clock off from the database servers' makes backup times and retention ages wrong: said once at start.
  void warnClockSkew(
    config.databases.map((d) => d.postgres),
    logger,
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
        await Promise.all([guards.close(), pruneQueue.close()]);
        logger.info('worker stopped');
      })();
      return closing;
    },
  };
}
