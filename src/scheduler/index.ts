/**
 * The scheduler: for every database, enqueues a backup job at each slot of its schedule (and a drill job at each
 * slot of its drill schedule). The job id is derived from (kind, database, local slot time), so any number of
 * scheduler replicas can run: BullMQ ignores an add whose job id exists, and each slot runs exactly once.
 *
 * Timing comes from slots.ts, not node-cron: node-cron 4 only fires at instants whose wall-clock time matches
 * the pattern, so a slot inside a spring-forward gap (02:30 on the night clocks jump from 02:00 to 03:00) never
 * fires there. Here every local slot fires once, DST or not, and the arithmetic is a tested pure function.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config, DatabaseTarget } from '../config/index.js';
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
}

export function groupSchedules(databases: readonly DatabaseTarget[]): Group[] {
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
  return [...groups.values()];
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
  const groups = groupSchedules(config.databases);

  /**
   * Claims (database, slot) for each database, then enqueues the claimed ones whose previous job has started
   * (or finished); the others are coalesced into that waiting job. Replicas and restarts find the claims.
   */
  const enqueueSlot = async (group: Group, slot: LocalSlot): Promise<number> => {
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
    const states = await Promise.all(lastIds.map((id) => (id ? q.getJobState(id) : Promise.resolve('none'))));
    const coalesced = claimed.filter((_, i) => NOT_STARTED.has(states[i] ?? 'none'));
    const toAdd = claimed.filter((_, i) => !NOT_STARTED.has(states[i] ?? 'none'));

    const jobs = toAdd.map((database) => ({
      name: group.kind,
      data: { database, slot: slot.local, timezone: group.timezone, scheduledAt: slot.at.toISOString() },
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
