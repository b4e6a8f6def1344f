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
import type { Config, DatabaseTarget } from '../config.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { createQueue, type JobKind } from '../queues.js';
import { localMs, previousSlot, slotAfter, type LocalSlot } from './slots.js';

/** Longest single wait: timers are re-armed at least hourly, so clock changes and sleeps are noticed. */
const MAX_WAIT_MS = 3_600_000;

interface Group {
  readonly kind: Extract<JobKind, 'backup' | 'drill'>;
  readonly expr: string;
  readonly timezone: string;
  readonly databases: string[];
}

/** Job id for one slot of one database: the same in every replica. BullMQ ids must not contain ':'. */
export function slotJobId(kind: string, database: string, slot: Pick<LocalSlot, 'local'>): string {
  return `${kind}--${encodeURIComponent(database)}--${slot.local.replace(/[-:]/g, '')}`;
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
  stop(): Promise<void>;
}

export interface SchedulerOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly now?: () => Date;
}

export function startScheduler(options: SchedulerOptions): Scheduler {
  const { config, logger } = options;
  const now = options.now ?? (() => new Date());
  const queues = new Map<JobKind, Queue>();
  const queue = (kind: JobKind): Queue => {
    let q = queues.get(kind);
    if (!q) queues.set(kind, (q = createQueue(config, kind)));
    return q;
  };
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;
  const groups = groupSchedules(config.databases);

  const enqueueSlot = async (group: Group, slot: LocalSlot): Promise<number> => {
    const jobs = group.databases.map((database) => ({
      name: group.kind,
      data: { database, slot: slot.local, timezone: group.timezone, scheduledAt: slot.at.toISOString() },
      opts: { jobId: slotJobId(group.kind, database, slot) },
    }));
    // One round trip for every database sharing this schedule; existing ids are left as they are.
    const added = await queue(group.kind).addBulk(jobs);
    logger.info(
      { kind: group.kind, slot: slot.local, timezone: group.timezone, databases: group.databases.length },
      'slot enqueued',
    );
    return added.length;
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
      enqueueSlot(group, next)
        .catch((err: unknown) =>
          logger.error(
            { err: errorMessage(err), kind: group.kind, slot: next.local },
            'could not enqueue a slot',
          ),
        )
        .finally(() => arm(group, next.naive));
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
    stop: async () => {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await ready.catch(() => undefined);
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}
