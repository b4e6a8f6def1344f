import { Queue, QueueEvents, type JobsOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { PgshelfError } from './errors.js';
import { resolveTarget, storageIdentity, type Config } from './config/index.js';
import { jobAttempts, type JobKind } from './jobs/registry.js';
import type { Logger } from './logger.js';
import { maskUrl } from './url.js';

export { JOB_KINDS, type JobKind } from './jobs/registry.js';

/*
 * Every queue name, job id and Redis key pgshelf uses is built here. BullMQ keeps its own keys under
 * `<prefix>:<queue>:`; pgshelf's own live beside them, under `<prefix>:scheduler:`, `<prefix>:guard:` and
 * `<prefix>:alerts:`.
 */

/** The BullMQ queue of a kind of job is named after it (under PGSHELF_QUEUE_PREFIX, BullMQ's `prefix`). */
export function queueName(kind: JobKind): string {
  return kind;
}

/** A job id of (kind, database, what): BullMQ ids must not contain ':', so the parts are joined by '--'. */
function databaseJobId(kind: JobKind, database: string, what: string): string {
  return `${kind}--${encodeURIComponent(database)}--${what}`;
}

/**
 * Job id for one slot of one database: the same in every scheduler replica, so a slot is enqueued once.
 * `local` is the slot's local time, e.g. 2026-03-29T02:30:00.
 */
export function slotJobId(kind: JobKind, database: string, slot: { readonly local: string }): string {
  return databaseJobId(kind, database, slot.local.replace(/[-:]/g, ''));
}

/** Job id of a job that follows another (prune after backup `after`): one follow-up per finished job. */
export function followUpJobId(kind: JobKind, database: string, after: string): string {
  return databaseJobId(kind, database, after);
}

/**
 * What a running job is called in its JobContext (`<prefix>:<queue>:<id>`, e.g. `pgshelf:restore:42`): stable
 * across the retries of one queued job, and distinct across prefixes sharing a Redis.
 */
export function runningJobId(prefix: string, kind: JobKind, id: string | undefined): string {
  return `${prefix}:${queueName(kind)}:${id ?? '?'}`;
}

/**
 * BullMQ's own lock of a job (`<prefix>:<queue>:<id>:lock`): held by the worker running it, renewed every half
 * PGSHELF_LOCK_DURATION, gone a lock duration after that worker died.
 */
export function jobLockKey(queue: Queue, id: string): string {
  return queue.toKey(`${id}:lock`);
}

/**
 * A scheduler's claim on one slot of one database (SET NX): whoever sets it enqueues the slot, so a slot is
 * enqueued once however long BullMQ keeps finished jobs. Outside BullMQ's `<prefix>:<queue>:` key space.
 */
export function slotClaimKey(prefix: string, kind: JobKind, database: string, slot: string): string {
  return `${prefix}:scheduler:claim:${kind}:${encodeURIComponent(database)}:${slot}`;
}

/**
 * Hash: database -> id of the last job a scheduler (or the dashboard's "back up now") enqueued for it, to
 * coalesce slots and clicks while it still waits.
 */
export function lastSlotJobsKey(prefix: string, kind: JobKind): string {
  return `${prefix}:scheduler:last:${kind}`;
}

/**
 * Job id of a job someone asked for now (the dashboard's buttons), to the second: a form sent twice adds one
 * job (BullMQ ignores an add whose id exists).
 */
export function manualJobId(kind: JobKind, database: string, at: Date): string {
  return databaseJobId(kind, database, `now-${secondStamp(at)}`);
}

/**
 * What alerts call a job a command ran `--in-process` (no queue gave it an id), started at `at`:
 * `backup--app--in-process-20261126T020000Z`.
 */
export function inProcessJobId(kind: JobKind, database: string, at: Date): string {
  return databaseJobId(kind, database, `in-process-${secondStamp(at)}`);
}

/** 2026-11-26T02:00:00.123Z -> 20261126T020000Z */
function secondStamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The data of a job queued by a command or the dashboard: its input, the database it resolves to, and the
 * storage it meant (a worker refuses a job for another database or storage, naming both).
 */
export function queuedJobData<I extends { readonly database?: string | undefined }>(
  config: Config,
  input: I,
): I & { database: string; storage: string } {
  return {
    ...input,
    database: resolveTarget(config, input.database).name,
    storage: storageIdentity(config.storage),
  };
}

/** The database guard: held by whichever job excludes others on that database (backup, prune). */
export function databaseGuardKey(prefix: string, database: string): string {
  return `${prefix}:guard:database:${encodeURIComponent(database)}`;
}

/** The server's semaphore (a sorted set of holders): at most PGSHELF_HOST_CONCURRENCY dumps on host:port. */
export function hostGuardKey(prefix: string, host: string, port: number): string {
  return `${prefix}:guard:host:${encodeURIComponent(`${host}:${port}`)}`;
}

/**
 * A database's alert state, `failed`, `overdue` or `ok` (src/alerts/): the first success after `failed` or
 * `overdue` swaps it to `ok` and is `backup.recovered`, whichever worker, scheduler or restart sees it.
 */
export function alertStateKey(prefix: string, database: string): string {
  return `${prefix}:alerts:state:${encodeURIComponent(database)}`;
}

/** The claim (SET NX) on the one `backup.overdue` alert of a missed slot, across scheduler replicas. */
export function overdueAlertKey(prefix: string, database: string, slot: string): string {
  return `${prefix}:alerts:overdue:${encodeURIComponent(database)}:${slot}`;
}

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
    // A host that drops packets would otherwise hold a connection attempt for the OS's TCP timeout (minutes).
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
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

const REDIS_CONNECT_TIMEOUT_MS = 10_000;

const CONNECTION_ERRORS =
  /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH|EPIPE|Connection is closed|connect/i;

/** Whether an error from a Redis client or a BullMQ object means "Redis cannot be reached" (not a job's failure). */
export function isRedisConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return CONNECTION_ERRORS.test(`${e.code ?? ''} ${e.message ?? ''}`);
}

/** Something that emits ioredis/BullMQ connection errors. */
interface ErrorSource {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * One voice for every Redis connection of a process (BullMQ queues and workers, guard clients): the first
 * failure logs one plain line, "cannot reach Redis at <URL> (<reason>); retrying", later ones at most one line
 * per `everyMs`, and "Redis is back" when a connection is ready again. Without it each connection logs each
 * retry (40 lines in 5 s for a worker), and a client without a listener prints ioredis' raw "Unhandled error
 * event" dumps between the JSON lines.
 */
export class RedisHealth {
  private down = false;
  private lastReport = 0;
  private quiet = 0;
  readonly url: string;

  constructor(
    redisUrl: string,
    private readonly logger: Logger,
    private readonly everyMs = 30_000,
  ) {
    this.url = maskUrl(redisUrl);
  }

  /** Routes `source`'s connection errors here; any other error goes to `other` (default: logged as is). */
  watch(source: ErrorSource, other?: (err: Error) => void): void {
    source.on('error', (err: Error) => {
      if (isRedisConnectionError(err)) this.failed(err);
      else if (other) other(err);
      else this.logger.error({ err: err.message }, 'Redis error');
    });
  }

  /** A BullMQ queue or worker: its errors, and its connection becoming ready (again). */
  watchBull(
    target: ErrorSource & { readonly client: Promise<{ on(event: 'ready', l: () => void): unknown }> },
    other?: (err: Error) => void,
  ): void {
    this.watch(target, other);
    target.client.then(
      (client) => {
        this.ok();
        client.on('ready', () => this.ok());
      },
      () => undefined,
    );
  }

  failed(err: unknown): void {
    const now = Date.now();
    if (this.down && now - this.lastReport < this.everyMs) {
      this.quiet++;
      return;
    }
    const reason = err instanceof Error ? err.message : String(err);
    const more = this.quiet > 0 ? ` (${this.quiet} more failures since the last line)` : '';
    this.logger.error(
      { redis: this.url, reason },
      `cannot reach Redis at ${this.url} (${reason}); retrying${more}. Start Redis or fix REDIS_URL`,
    );
    this.down = true;
    this.lastReport = now;
    this.quiet = 0;
  }

  /** A connection is ready: says so once after an outage. */
  ok(): void {
    if (!this.down) return;
    this.down = false;
    this.quiet = 0;
    this.logger.info({ redis: this.url }, `Redis is back at ${this.url}`);
  }
}

/** Retries with exponential backoff; finished jobs are kept a while for `pgshelf` and the dashboard. */
export function defaultJobOptions(config: Config, kind: JobKind): JobsOptions {
  return {
    attempts: jobAttempts(kind, config.attempts),
    backoff: { type: BACKOFF_TYPE },
    removeOnComplete: { age: 30 * 24 * 3600, count: 1000 },
    removeOnFail: { age: 90 * 24 * 3600, count: 5000 },
  };
}

export function createQueue(config: Config, kind: JobKind, connection = redisConnection(config)): Queue {
  return new Queue(queueName(kind), {
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
  return new QueueEvents(queueName(kind), { connection, prefix: config.queuePrefix });
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
  // connectTimeout ends at the TCP connection: a server that accepts and never answers (a hung Redis, a proxy
  // whose upstream is gone) would hold the ready check and the PING for ever. This bounds the whole check.
  const attempt = client.connect().then(() => client.ping());
  attempt.catch(() => undefined); // also settled, by the disconnect below, when the deadline wins
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      cause = new Error(`no answer within ${timeoutMs} ms`);
      reject(cause);
    }, timeoutMs);
  });
  try {
    await Promise.race([attempt, deadline]);
  } catch (err) {
    const why = cause?.message ?? (err instanceof Error ? err.message : String(err));
    throw new PgshelfError(
      `cannot reach Redis at ${maskUrl(config.redisUrl)} (${why}): start Redis or fix REDIS_URL, e.g. ` +
        'REDIS_URL=redis://127.0.0.1:6379, or run the job here with --in-process',
    );
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}
