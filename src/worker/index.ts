import { hostname } from 'node:os';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { findServer, resolveTarget, serverTakes, storageIdentity, type Config } from '../config/index.js';
import { parseGlobalsName } from '../catalog/layout.js';
import { ConfigError, errorMessage, isRecoverable } from '../errors.js';
import { createRegistry, type RegisteredJob } from '../jobs/registry.js';
import type { Logger } from '../logger.js';
import { warnClockSkew } from '../postgres/server.js';
import {
  createQueue,
  followUpJobId,
  JOB_KINDS,
  queueName,
  RedisHealth,
  redisConnection,
  retryDelay,
  runningJobId,
  type JobKind,
} from '../queues.js';
import type { Storage } from '../storage/index.js';
import { JobEvents } from './events.js';
import { BackupGuards } from './locks.js';
import { logJobEvents } from './log-events.js';

export { JobEvents, type JobEventMap, type JobEventName } from './events.js';

export interface WorkerOptions {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  /** Queues to consume (default: every kind this build has a job for). */
  readonly kinds?: readonly JobKind[];
  /** Where the job events go (default: a new emitter); the log subscribes to it either way. */
  readonly events?: JobEvents;
}

export interface PgshelfWorker {
  readonly workers: readonly Worker[];
  /** What happens to the jobs: subscribe for metrics, notifications. */
  readonly events: JobEvents;
  /** Resolves once every queue's connection is up (and 'worker started' has been logged). */
  readonly ready: Promise<void>;
  /** Jobs running now. */
  readonly active: () => number;
  /** Lets running jobs finish within the grace period, then aborts them; resolves when every job has settled. */
  close(graceMs?: number): Promise<void>;
  /** Aborts every running job now (kills pg_dump/psql, aborts uploads). Synchronous. */
  abortAll(reason?: string): void;
}

/** No spaces: Redis refuses them in a client name. */
const WORKER_NAME = `${hostname().replace(/\s+/g, '-')}:${process.pid}`;

/**
 * How long a job that must wait for a guard (same database running, server at its limit) waits to try again:
 * 10 s give or take a quarter, so jobs put back together do not all come back in the same instant, nor in step
 * with a schedule whose slots are a multiple of 10 s apart (each try then met the next slot's jobs at the guard).
 */
function waitMs(): number {
  return Math.round(10_000 * (0.75 + Math.random() / 2));
}

/** What a queued job says it is for: set by `pgshelf` commands from their own settings. */
interface JobTarget {
  readonly database?: unknown;
  readonly storage?: unknown;
  /** The `servers:` entry (`host:port`) that discovered the database. */
  readonly server?: unknown;
}

/** Whether the worker knows `database`: listed, a server's globals, or taken by a `servers:` entry's globs. */
function knows(config: Config, database: string, server: unknown): boolean {
  if (config.databases.some((d) => d.name === database)) return true;
  const globals = parseGlobalsName(database);
  if (globals) {
    // A `servers:` entry's globals, or those of a server whose databases the worker backs up.
    const id = `${globals.host}:${globals.port}`;
    return (
      findServer(config, id) !== undefined ||
      config.databases.some((d) => `${d.postgres.host}:${d.postgres.port}` === id)
    );
  }
  const named = typeof server === 'string' ? findServer(config, server) : undefined;
  if (named) return serverTakes(named, database);
  return config.servers.some((s) => serverTakes(s, database));
}

/**
 * A job runs with this worker's settings, so it runs only when they are the ones the command asked for: the same
 * storage, and a database this worker knows. Anything else fails at once, naming both sides, never silently
 * running on something else. (Jobs without these fields, from older commands, mean the worker's own.)
 */
export function checkJobTarget(
  config: Config,
  job: Pick<RegisteredJob, 'kind' | 'acts'>,
  data: JobTarget,
): void {
  const { kind } = job;
  const own = storageIdentity(config.storage);
  if (typeof data.storage === 'string' && data.storage !== own) {
    throw new ConfigError(
      `this worker writes to ${own}; the job asked for ${data.storage}: start a worker with ` +
        `PGSHELF_STORAGE set as the command's (and the same S3_ENDPOINT), or run the ${kind} with --in-process`,
    );
  }
  if (typeof data.database === 'string' && !knows(config, data.database, data.server)) {
    const known =
      [...config.databases.map((d) => d.name), ...config.servers.map((s) => `the databases of ${s.id}`)].join(
        ', ',
      ) || 'none';
    throw new ConfigError(
      `this worker does not ${job.acts ?? `${kind} backups of`} database ` +
        `"${data.database}": it knows ${known} — start a worker with POSTGRES_DB=${data.database} or list it ` +
        'in PGSHELF_CONFIG',
    );
  }
}

/** The database a job without one in its data is for (the worker's default). */
function defaultDatabase(config: Config): string | undefined {
  try {
    return resolveTarget(config).name;
  } catch {
    return undefined;
  }
}

/** BullMQ adapter: one Worker per queue, each turning a BullMQ job into a call of the registry's job function. */
export function startWorker(options: WorkerOptions): PgshelfWorker {
  const { config, storage, logger } = options;
  const registry = createRegistry({ config, storage, logger });
  const events =
    options.events ??
    new JobEvents((err, name) =>
      logger.warn({ err: errorMessage(err), event: name }, 'job event subscriber failed'),
    );
  logJobEvents(events, logger);
  const running = new Map<string, AbortController>();
  const kinds = options.kinds ?? JOB_KINDS;

  const health = new RedisHealth(config.redisUrl, logger);
  // The guards expire with the job lock: a job whose worker died is run again after about
  // PGSHELF_LOCK_DURATION, and must not then wait out a dead worker's guard (it was a fixed 60 s).
  const guards = new BackupGuards(
    redisConnection(config),
    config.queuePrefix,
    config.hostConcurrency,
    config.lockDurationMs,
  );
  // The queues follow-up jobs go to (prune after backup), opened once.
  const followQueues = new Map(
    [...new Set(kinds.flatMap((k) => registry[k].followedBy?.kind ?? []))].map((k) => {
      const q = createQueue(config, k);
      health.watchBull(q);
      return [k, q] as const;
    }),
  );

  /** Takes the guards the job declares; undefined when it declares none. */
  const takeGuards = (job: RegisteredJob, database: string, host: string, port: number) => {
    if (job.excludes?.host) return guards.acquire(database, host, port);
    if (job.excludes?.database) return guards.acquireDatabase(database);
    return undefined;
  };

  /** Enqueues the job declared to follow `job` (e.g. prune after a backup); a failure to do so is logged only. */
  const followUp = async (
    job: RegisteredJob,
    database: string,
    server: string | undefined,
    result: unknown,
    id: string,
    log: Logger,
  ) => {
    const next = job.followedBy;
    const queue = next && followQueues.get(next.kind);
    if (!next || !queue) return;
    const jobId = followUpJobId(next.kind, database, next.key(result) ?? id);
    await queue
      .add(
        next.kind,
        { database, storage: storageIdentity(config.storage), ...(server ? { server } : {}) },
        { jobId },
      )
      .catch((err: unknown) =>
        log.warn({ err: errorMessage(err) }, `could not enqueue the ${next.kind} job`),
      );
  };

  const workers = kinds.map((kind) => {
    const job = registry[kind];
    const processor = async (bull: Job, token?: string): Promise<unknown> => {
      const abort = new AbortController();
      const key = `${kind}:${bull.id ?? '?'}:${bull.attemptsMade}`;
      running.set(key, abort);
      const attempt = bull.attemptsMade + 1;
      const log = logger.child({ queue: kind, jobId: bull.id, attempt });
      const data = bull.data as JobTarget;
      const named = typeof data.database === 'string' ? data.database : undefined;
      const base = {
        kind,
        jobId: String(bull.id ?? '?'),
        database: named ?? defaultDatabase(config),
        attempt,
      };
      let startedAt = Date.now();
      try {
        checkJobTarget(config, job, data);
        const server = typeof data.server === 'string' ? data.server : undefined;
        const target = resolveTarget(config, named, server);
        const guard = await takeGuards(job, target.name, target.postgres.host, target.postgres.port);
        if (guard && !guard.ok) {
          const message =
            guard.reason === 'host-full'
              ? `the server already runs ${config.hostConcurrency} dumps: waiting`
              : (job.excludes?.database?.waiting ?? 'waiting');
          events.emit('job:waiting', { ...base, database: target.name, reason: guard.reason, message });
          await bull.moveToDelayed(Date.now() + waitMs(), token);
          throw new DelayedError();
        }
        try {
          startedAt = Date.now();
          events.emit('job:started', { ...base, database: target.name });
          const result = await job.run(bull.data, {
            signal: abort.signal,
            logger: log,
            jobId: runningJobId(config.queuePrefix, kind, bull.id),
            progress: (p) => {
              events.emit('job:progress', { ...base, database: target.name, progress: p });
              bull
                .updateProgress({ ...p })
                .catch((err: unknown) => log.debug({ err }, 'progress update failed'));
            },
          });
          await followUp(job, target.name, server, result, String(bull.id), log);
          events.emit('job:succeeded', {
            ...base,
            database: target.name,
            durationMs: Date.now() - startedAt,
            result,
          });
          return result;
        } finally {
          await guard?.release();
        }
      } catch (err) {
        if (err instanceof DelayedError) throw err;
        const attempts = bull.opts.attempts ?? 1;
        // Retrying cannot fix bad settings, a missing database or a corrupt archive: fail now, keep the reason.
        const final = !isRecoverable(err) || attempt >= attempts;
        const durationMs = Date.now() - startedAt;
        const message = errorMessage(err);
        events.emit(final ? 'job:failed' : 'job:retrying', {
          ...base,
          durationMs,
          error: err,
          message,
          attempts,
        });
        if (!isRecoverable(err)) throw new UnrecoverableError(message);
        throw err;
      } finally {
        running.delete(key);
      }
    };
    const worker = new Worker(queueName(kind), processor, {
      // host:pid names this process in BullMQ's worker list (`pgshelf status`, the dashboard).
      name: WORKER_NAME,
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
    [...config.databases, ...config.servers].map((d) => d.postgres),
    logger,
  );

  const abortAll = (reason = 'worker shutting down'): void => {
    for (const controller of running.values()) controller.abort(new Error(reason));
  };

  let closing: Promise<void> | undefined;
  return {
    workers,
    events,
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
        await Promise.all([guards.close(), ...[...followQueues.values()].map((q) => q.close())]);
        logger.info('worker stopped');
      })();
      return closing;
    },
  };
}
