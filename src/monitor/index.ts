/**
 * What `pgshelf serve` keeps open: BullMQ queues (job counts, workers), a Redis client for health checks, and
 * the status report refreshed at most once per TTL. Built on storage and Redis only, like the report itself.
 */
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { createQueue, JOB_KINDS, redisConnection, RedisHealth, type JobKind } from '../queues.js';
import type { Storage } from '../storage/index.js';
import { Refreshing, within, type Snapshot } from './cache.js';
import { collectStatus, type ManifestCache, type StatusReport } from './status.js';

export * from './status.js';
export { Refreshing, within, type Snapshot } from './cache.js';

export interface MonitorOptions {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  /** How long a status report is served before a request refreshes it (default 15 s). */
  readonly ttlMs?: number;
  /** Most time a health check or a Redis query may take (default 3 s). */
  readonly timeoutMs?: number;
  readonly clock?: () => Date;
}

export interface Check {
  readonly ok: boolean;
  /** Why not, naming the service and what to do. */
  readonly error?: string;
}

export interface Health {
  readonly ok: boolean;
  readonly redis: Check;
  readonly storage: Check;
}

export interface Monitor {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  /** BullMQ queues by kind (for the dashboard's buttons and bull-board too). */
  readonly queues: ReadonlyMap<JobKind, Queue>;
  /** The status report, at most TTL old (refreshed once however many ask). */
  status(): Promise<Snapshot<StatusReport>>;
  /** Refreshes the report now, e.g. after queueing a job. */
  refresh(): Promise<Snapshot<StatusReport>>;
  /** Redis and storage answer now (cached for a second or two, so a probe storm is one check). */
  health(): Promise<Health>;
  close(): Promise<void>;
}

/** A key that never exists: a HEAD (stat) on it proves the storage answers, at the cost of one request. */
const PROBE_KEY = '.pgshelf-health-probe';

export function createMonitor(options: MonitorOptions): Monitor {
  const { config, storage, logger } = options;
  const timeoutMs = options.timeoutMs ?? 3000;
  const clock = options.clock ?? (() => new Date());
  const redisHealth = new RedisHealth(config.redisUrl, logger);
  const connection = redisConnection(config);
  const queues = new Map<JobKind, Queue>();
  for (const kind of JOB_KINDS) {
    const queue = createQueue(config, kind, connection);
    redisHealth.watchBull(queue);
    queues.set(kind, queue);
  }
  // A ping sent while connecting waits for the connection (the first probe right after start must not fail); one
  // sent while Redis is down fails at the next failed reconnection (maxRetriesPerRequest 0), or at the timeout.
  const ping = new Redis({ ...connection, maxRetriesPerRequest: 0 });
  redisHealth.watch(ping);
  const manifests: ManifestCache = new Map();

  const report = new Refreshing<StatusReport>(
    (now) => collectStatus({ config, storage, logger, manifests, queues, redisTimeoutMs: timeoutMs }, now),
    options.ttlMs ?? 15_000,
    clock,
  );

  const check = async (what: string, fix: string, probe: () => Promise<unknown>): Promise<Check> => {
    try {
      await within(probe(), timeoutMs, what);
      return { ok: true };
    } catch (err) {
      return { ok: false, error: `${what}: ${errorMessage(err)}; ${fix}` };
    }
  };
  const health = new Refreshing<Health>(
    async () => {
      const [r, s] = await Promise.all([
        check(`Redis at ${redisHealth.url}`, 'start Redis or fix REDIS_URL', () => ping.ping()),
        check(`storage ${storage.url}`, 'check PGSHELF_STORAGE and its credentials', () =>
          storage.stat(PROBE_KEY),
        ),
      ]);
      return { ok: r.ok && s.ok, redis: r, storage: s };
    },
    1000,
    clock,
  );

  return {
    config,
    storage,
    logger,
    queues,
    status: () => report.get(),
    refresh: () => report.refresh(),
    health: async () => (await health.get()).value!,
    close: async () => {
      await Promise.allSettled([...queues.values()].map((q) => q.close()));
      ping.disconnect();
    },
  };
}
