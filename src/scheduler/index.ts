/**
 * The scheduler: for every database, enqueues a backup job at each slot of its schedule (and a drill job at each
 * slot of its drill schedule). The job id is derived from (kind, database, local slot time), so any number of
 * scheduler replicas can run: BullMQ ignores an add whose job id exists, and each slot runs exactly once.
 *
 * Timing comes from slots.ts, not node-cron: node-cron 4 only fires at instants whose wall-clock time matches
 * the pattern, so a slot inside a spring-forward gap (02:30 on the night clocks jump from 02:00 to 03:00) never
 * fires there. Here every local slot fires once, DST or not, and the arithmetic is a tested pure function.
 */
import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { serverTakes, type Config, type DatabaseTarget, type ServerTarget } from '../config/index.js';
import { globalsName, isGlobalsName } from '../catalog/layout.js';
import { listDatabases } from '../postgres/globals.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  createQueue,
  lastSlotJobsKey,
  RedisHealth,
  slotClaimKey,
  slotJobId,
  type JobKind,
} from '../queues.js';
import { localMs } from '../cron.js';
import { previousSlot, slotAfter, type LocalSlot } from './slots.js';

/** Longest single wait: timers are re-armed at least hourly, so clock changes and sleeps are noticed. */
const MAX_WAIT_MS = 3_600_000;

interface Group {
  readonly kind: Extract<JobKind, 'backup' | 'drill'>;
  readonly expr: string;
  readonly timezone: string;
  readonly databases: string[];
  /** A `servers:` entry: its databases are listed at each slot (and its globals backed up with them). */
  readonly server?: ServerTarget;
}

export function groupSchedules(
  databases: readonly DatabaseTarget[],
  servers: readonly ServerTarget[] = [],
): Group[] {
  const groups = new Map<string, Group>();
  const add = (kind: Group['kind'], expr: string, timezone: string, name: string): void => {
    const key = `${kind}|${expr}|${timezone}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { kind, expr, timezone, databases: [] }));
    g.databases.push(name);
  };
  for (const d of databases) {
    add('backup', d.schedule, d.timezone, d.name);
    if (d.drillSchedule) add('drill', d.drillSchedule, d.timezone, d.name);
  }
  const out = [...groups.values()];
  for (const server of servers) {
    out.push({ kind: 'backup', expr: server.schedule, timezone: server.timezone, databases: [], server });
    if (server.drillSchedule) {
      out.push({
        kind: 'drill',
        expr: server.drillSchedule,
        timezone: server.timezone,
        databases: [],
        server,
      });
    }
  }
  return out;
}

/**
 * The databases of a `servers:` entry to back up (or drill) at this slot: those the server has now whose names its
 * globs take, less the ones listed under `databases:` (their own entry wins); for backups, its globals first. A
 * server that cannot be listed still gets its globals job, which then fails and is recorded as a failed attempt.
 */
export async function discoverSlot(
  config: Config,
  group: Group & { server: ServerTarget },
  logger: Logger,
): Promise<string[]> {
  const { server } = group;
  const globals = group.kind === 'backup' ? [globalsName(server.postgres.host, server.postgres.port)] : [];
  let names: string[];
  try {
    names = await listDatabases(server.postgres, { echo: config.dbEcho, logger });
  } catch (err) {
    logger.error(
      { server: server.id, err: errorMessage(err) },
      `cannot list the databases of ${server.id}: only its globals are enqueued`,
    );
    return globals;
  }
  const listed = new Set(config.databases.map((d) => d.name));
  const taken = names.filter((n) => serverTakes(server, n) && !listed.has(n) && !isGlobalsName(n));
  logger.info(
    {
      server: server.id,
      kind: group.kind,
      found: names.length,
      taken: taken.length,
      left: names.filter((n) => !taken.includes(n)).slice(0, 20),
    },
    'databases discovered',
  );
  return [...globals, ...taken];
}

export interface Scheduler {
  /** Resolves once the start-up catch-up has been enqueued. */
  readonly ready: Promise<void>;
  /** Enqueues one slot for a group now (used by the timers; exposed for benchmarks). */
  enqueueSlot(group: Group, slot: LocalSlot): Promise<number>;
  /** Slots not enqueued because the database's previous job was still waiting, since start. */
  coalesced(): number;
  /** Closes the connections, waiting at most `graceMs` for Redis before dropping them. */
  stop(graceMs?: number): Promise<void>;
}

export interface SchedulerOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly now?: () => Date;
}

/** Job states in which a job has not started: a new slot is merged into it rather than queued behind it. */
const NOT_STARTED = new Set(['waiting', 'prioritized', 'paused']);

/**
 * Whether the previous slot's job has yet to dump: waiting, or put back by a worker to wait for a guard (the
 * server at PGSHELF_HOST_CONCURRENCY, or the database's own backup running). A put-back job is `delayed` with no
 * attempt made; a delayed job with one is a retry after a failure, and gets a job of its own beside it. Without
 * the put-back case, every slot of a server held at its limit queued one more job per database (a 2 s schedule
 * piled up 30 jobs for a database in a minute).
 */
async function notStarted(q: Queue, id: string | null): Promise<boolean> {
  if (!id) return false;
  const state = await q.getJobState(id);
  if (NOT_STARTED.has(state)) return true;
  if (state !== 'delayed') return false;
  const job = await Job.fromId(q, id);
  return job !== undefined && job.attemptsMade === 0;
}

/** Past this lag a slot can no longer be caught up (previousSlot looks back this far). */
const CATCH_UP_WINDOW_MS = 8 * 86_400_000;

/**
 * How long a slot's claim is kept: until the next slot (after which catch-up no longer picks this one),
 * capped at the catch-up window, plus an hour for clocks of replicas that disagree.
 */
export function claimTtlSeconds(group: Pick<Group, 'expr' | 'timezone'>, slot: LocalSlot): number {
  const gap = slotAfter(group.expr, group.timezone, slot.naive).at.getTime() - slot.at.getTime();
  return Math.ceil((Math.min(Math.max(gap, 0), CATCH_UP_WINDOW_MS) + 3_600_000) / 1000);
}

export function startScheduler(options: SchedulerOptions): Scheduler {
  const { config, logger } = options;
  const now = options.now ?? (() => new Date());
  const health = new RedisHealth(config.redisUrl, logger);
  const queues = new Map<JobKind, Queue>();
  const queue = (kind: JobKind): Queue => {
    let q = queues.get(kind);
    if (!q) {
      queues.set(kind, (q = createQueue(config, kind)));
      health.watchBull(q);
    }
    return q;
  };
  const timers = new Set<NodeJS.Timeout>();
  /** Slots being enqueued now: stop() lets them finish (within the grace), so no job goes unlogged. */
  const inflight = new Set<Promise<void>>();
  let stopped = false;
  let coalescedTotal = 0;
  const groups = groupSchedules(config.databases, config.servers);

  /**
   * Claims (database, slot) for each database, then enqueues the claimed ones whose previous job has started
   * (or finished); the others are coalesced into that waiting job. Replicas and restarts find the claims.
   */
  const enqueueSlot = async (group: Group, slot: LocalSlot): Promise<number> => {
    if (group.server) {
      // Listed anew at every slot: a database created since the last one is backed up at this one.
      const server = group.server;
      const databases = await discoverSlot(config, { ...group, server }, logger);
      return enqueueNames({ ...group, databases }, slot, server.id);
    }
    return enqueueNames(group, slot, undefined);
  };

  const enqueueNames = async (group: Group, slot: LocalSlot, server: string | undefined): Promise<number> => {
    const q = queue(group.kind);
    // BullMQ's own connection: ioredis underneath (its declared type is narrower).
    const client = (await q.client) as unknown as Redis;
    const ttl = claimTtlSeconds(group, slot);
    const claims = group.databases.map((d) => slotClaimKey(config.queuePrefix, group.kind, d, slot.local));
    const claimBatch = client.pipeline();
    for (const key of claims) claimBatch.set(key, slot.at.toISOString(), 'EX', ttl, 'NX');
    const answers = (await claimBatch.exec()) ?? [];
    const claimed = group.databases.filter((_, i) => {
      const [err, reply] = answers[i] ?? [new Error('no reply'), null];
      if (err) throw err;
      return reply === 'OK';
    });

    const lastKey = lastSlotJobsKey(config.queuePrefix, group.kind);
    const lastIds = claimed.length > 0 ? await client.hmget(lastKey, ...claimed) : [];
    const pending = await Promise.all(lastIds.map((id) => notStarted(q, id)));
    const coalesced = claimed.filter((_, i) => pending[i]);
    const toAdd = claimed.filter((_, i) => !pending[i]);

    const jobs = toAdd.map((database) => ({
      name: group.kind,
      data: {
        database,
        slot: slot.local,
        timezone: group.timezone,
        scheduledAt: slot.at.toISOString(),
        ...(server ? { server } : {}),
      },
      opts: { jobId: slotJobId(group.kind, database, slot) },
    }));
    try {
      // One round trip for every database sharing this schedule.
      if (jobs.length > 0) await q.addBulk(jobs);
    } catch (err) {
      // Unclaim, so a retry (another replica, a restart) can enqueue them.
      const unclaim = toAdd.map((d) => slotClaimKey(config.queuePrefix, group.kind, d, slot.local));
      await client.del(...unclaim).catch(() => undefined);
      throw err;
    }
    if (jobs.length > 0) {
      // Expires like the claims: a hash left by a deployment that is gone does not stay in Redis for ever.
      await client
        .multi()
        .hset(lastKey, Object.fromEntries(jobs.map((j) => [j.data.database, j.opts.jobId])))
        .expire(lastKey, ttl)
        .exec();
    }
    coalescedTotal += coalesced.length;
    logger.info(
      {
        kind: group.kind,
        slot: slot.local,
        timezone: group.timezone,
        databases: group.databases.length,
        enqueued: jobs.length,
        coalesced: coalesced.length,
        alreadyEnqueued: group.databases.length - claimed.length,
      },
      'slot enqueued',
    );
    if (coalesced.length > 0) {
      logger.warn(
        {
          kind: group.kind,
          slot: slot.local,
          coalesced: coalesced.length,
          databases: coalesced.slice(0, 10),
        },
        `${coalesced.length} ${group.kind} jobs coalesced: the previous slot's job of each database had not ` +
          'started yet, so this slot runs as that job (add workers, or space the schedule out)',
      );
    }
    return jobs.length;
  };

  const arm = (group: Group, after: number): void => {
    if (stopped) return;
    const next = slotAfter(group.expr, group.timezone, after);
    const wait = Math.min(MAX_WAIT_MS, Math.max(0, next.at.getTime() - now().getTime()));
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (now().getTime() + 50 < next.at.getTime()) {
        arm(group, after); // woke early (long wait capped): look again
        return;
      }
      const pending: Promise<void> = enqueueSlot(group, next)
        .then(
          () => undefined,
          (err: unknown) =>
            logger.error(
              { err: errorMessage(err), kind: group.kind, slot: next.local },
              'could not enqueue a slot',
            ),
        )
        .finally(() => {
          inflight.delete(pending);
          arm(group, next.naive);
        });
      inflight.add(pending);
    }, wait);
    timers.add(timer);
  };

  const ready = (async () => {
    const start = now();
    for (const group of groups) {
      if (config.catchUp === 'last') {
        // The slot before now, if it was missed: its id makes this a no-op when it already ran.
        const missed = previousSlot(group.expr, group.timezone, start, 8 * 86_400_000);
        if (missed) {
          await enqueueSlot(group, missed).catch((err: unknown) =>
            logger.error({ err: errorMessage(err) }, 'could not enqueue the catch-up slot'),
          );
        }
      }
      arm(group, localMs(start.getTime(), group.timezone));
    }
    logger.info(
      {
        groups: groups.length,
        databases: config.databases.length,
        servers: config.servers.map((s) => s.id),
        catchUp: config.catchUp,
        prefix: config.queuePrefix,
      },
      'scheduler started',
    );
  })();

  return {
    ready,
    enqueueSlot,
    coalesced: () => coalescedTotal,
    stop: async (graceMs = config.shutdownGraceMs) => {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      // With Redis down the catch-up's add waits for ever: wait for it and the close at most graceMs.
      const closed = (async () => {
        await ready.catch(() => undefined);
        await Promise.all([...inflight]);
        await Promise.all([...queues.values()].map((q) => q.close()));
      })();
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>((resolve) => {
        timer = setTimeout(() => resolve('expired'), graceMs);
      });
      const first = await Promise.race([closed.then(() => 'closed' as const), expired]);
      clearTimeout(timer);
      if (first === 'expired') {
        logger.warn({ graceMs }, 'Redis did not answer within the grace period: dropping its connections');
        // Not awaited: BullMQ's disconnect waits for a connection that never came up, which would hold the exit.
        for (const q of queues.values()) void q.disconnect().catch(() => undefined);
      }
      logger.info('scheduler stopped');
    },
  };
}
