import { Queue, QueueEvents, type JobsOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { PgshelfError } from './errors.js';
import type { Config } from './config.js';
import { maskUrl } from './url.js';

/** One queue per kind of job, all under PGSHELF_QUEUE_PREFIX. */
export const JOB_KINDS = ['backup', 'restore', 'prune', 'drill'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** BullMQ connection options from REDIS_URL. Workers need maxRetriesPerRequest: null (blocking commands). */
export function redisConnection(config: Config): RedisOptions {
  const url = new URL(config.redisUrl);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return {
    host: url.hostname || '127.0.0.1',
    port: url.port ? Number(url.port) : 6379,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(Number.isInteger(db) ? { db } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/**
 * The backoff type of every job: the worker that runs a job computes its delay from its own PGSHELF_RETRY_DELAY
 * (see retryDelay), since a delay fixed by whoever queued the job would ignore the worker's setting.
 */
export const BACKOFF_TYPE = 'pgshelf';

/** Delay before retry number `attemptsMade` (1 for the first): PGSHELF_RETRY_DELAY, doubling each time. */
export function retryDelay(config: Config, attemptsMade: number): number {
  return Math.round(2 ** Math.max(0, attemptsMade - 1) * config.retryDelayMs);
}

/** Retries with exponential backoff; finished jobs are kept a while for `pgshelf` and the dashboard. */
export function defaultJobOptions(config: Config, kind: JobKind): JobsOptions {
  return {
    attempts: kind === 'prune' ? 1 : config.attempts,
    backoff: { type: BACKOFF_TYPE },
    removeOnComplete: { age: 30 * 24 * 3600, count: 1000 },
    removeOnFail: { age: 90 * 24 * 3600, count: 5000 },
  };
}

export function createQueue(config: Config, kind: JobKind, connection = redisConnection(config)): Queue {
  return new Queue(kind, {
    connection,
    prefix: config.queuePrefix,
    defaultJobOptions: defaultJobOptions(config, kind),
  });
}

export function createQueueEvents(
  config: Config,
  kind: JobKind,
  connection = redisConnection(config),
): QueueEvents {
  return new QueueEvents(kind, { connection, prefix: config.queuePrefix });
}

/**
 * Fails fast, with what to do, when Redis cannot be reached: BullMQ's own connections retry forever, which
 * would leave a command waiting silently.
 */
export async function checkRedis(config: Config, timeoutMs = 5000): Promise<void> {
  const client = new Redis({
    ...redisConnection(config),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let cause: Error | undefined;
  client.on('error', (err: Error) => (cause ??= err));
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    const why = cause?.message ?? (err instanceof Error ? err.message : String(err));
    throw new PgshelfError(
      `cannot reach Redis at ${maskUrl(config.redisUrl)} (${why}): start Redis or fix REDIS_URL, e.g. ` +
        'REDIS_URL=redis://127.0.0.1:6379, or run the job here with --in-process',
    );
  } finally {
    client.disconnect();
  }
}
