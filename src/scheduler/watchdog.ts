/**
 * The watchdog: raises `backup.overdue` when a database's last success is older than its latest slot plus
 * PGSHELF_OVERDUE_GRACE (the rule of overdue.ts), from the scheduler, so it fires when no worker runs at all.
 * Exactly one alert per (database, missed slot) across any number of scheduler replicas (a Redis SET NX).
 *
 * Cheap at scale: the due slot is computed once per schedule, and a database is read from storage (its attempt
 * marker; manifests only when the marker shows no success since the slot) only when what is known of it no
 * longer proves a success after the due slot: once per slot, plus a re-read every few minutes while overdue.
 */
import type { Config } from '../config/index.js';
import { mapLimit } from '../concurrency.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Alerts } from '../alerts/index.js';
import { lastSuccessAt } from '../catalog/backups.js';
import { manifestTrust } from '../catalog/manifest.js';
import type { Storage } from '../storage/index.js';
import { isMissed, overdueState } from './overdue.js';
import { nextSlot, slotAfter, type LocalSlot } from './slots.js';

export interface WatchdogOptions {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  readonly alerts: Alerts;
  readonly now?: () => Date;
  /** Between checks (default 30 s); a check also runs when a slot's grace runs out. */
  readonly everyMs?: number;
  /** How often an overdue database is read again, to clear it when a backup made elsewhere lands (5 min). */
  readonly recheckMs?: number;
}

export interface WatchdogCheck {
  /** Databases read from storage in this check. */
  readonly read: number;
  /** Databases overdue after it. */
  readonly overdue: readonly string[];
  /** `backup.overdue` alerts this check raised (claimed here, not by another replica or an earlier check). */
  readonly raised: number;
}

export interface Watchdog {
  /** Runs one check now (the timer's checks run through it too; never two at once). */
  check(): Promise<WatchdogCheck>;
  /** Checks done since start. */
  readonly checks: () => number;
  stop(): Promise<void>;
}

/** Storage reads at once. */
const READS = 16;

interface Group {
  readonly schedule: string;
  readonly timezone: string;
  readonly databases: string[];
}

function groups(config: Config): Group[] {
  const out = new Map<string, Group>();
  for (const d of config.databases) {
    const key = `${d.schedule}|${d.timezone}`;
    let g = out.get(key);
    if (!g) out.set(key, (g = { schedule: d.schedule, timezone: d.timezone, databases: [] }));
    g.databases.push(d.name);
  }
  return [...out.values()];
}

/**
 * Until the slot after `due` is due too (after which `due` is never the due slot again), plus a margin for
 * replicas whose clocks disagree: an hour, or one gap when slots come more often (per-minute schedules would
 * otherwise keep 60 claims per database).
 */
function claimTtlSeconds(g: Group, due: LocalSlot, graceMs: number): number {
  const gap = Math.max(0, slotAfter(g.schedule, g.timezone, due.naive).at.getTime() - due.at.getTime());
  return Math.ceil((gap + graceMs + Math.min(3_600_000, Math.max(60_000, gap))) / 1000);
}

export function startWatchdog(options: WatchdogOptions): Watchdog {
  const { config, storage, logger, alerts } = options;
  const now = options.now ?? (() => new Date());
  const everyMs = options.everyMs ?? 30_000;
  const recheckMs = options.recheckMs ?? 300_000;
  const graceMs = config.overdueGraceMs;
  const trust = manifestTrust(config);
  const all = groups(config);
  /** The newest success known per database (null: none in storage), and when it was read. */
  const known = new Map<string, { last: Date | null; readAt: number; alerted?: string }>();
  let stopped = false;
  let running: Promise<WatchdogCheck> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let done = 0;

  const checkDatabase = async (g: Group, database: string, due: LocalSlot, at: Date) => {
    const last = (await lastSuccessAt(storage, database, { trust, atLeast: due.at })) ?? null;
    const before = known.get(database);
    if (!isMissed(due, last ?? undefined)) {
      known.set(database, { last, readAt: at.getTime() });
      // A success after the slot, seen here: clears `overdue` when no worker did (a backup run --in-process).
      // Asked once after start too, for an `overdue` left by another replica or an earlier run.
      if ((before === undefined || before.alerted !== undefined) && (await alerts.clearOverdue(database))) {
        alerts.raise({
          event: 'backup.recovered',
          database,
          job: null,
          reason: null,
          occurredAt: at,
          ...(last ? { finishedAt: last } : {}),
        });
      }
      return { overdue: false, raised: false };
    }
    let raised = false;
    if (before?.alerted !== due.local) {
      raised = await alerts.claimOverdue(database, due.local, claimTtlSeconds(g, due, graceMs));
      if (raised) {
        alerts.raise({
          event: 'backup.overdue',
          database,
          job: null,
          reason: null,
          occurredAt: at,
          slot: { local: due.local, at: due.at, timezone: g.timezone },
          lastSuccess: last,
          graceMinutes: graceMs / 60_000,
        });
      }
    }
    known.set(database, { last, readAt: at.getTime(), alerted: due.local });
    return { overdue: true, raised };
  };

  const runCheck = async (): Promise<WatchdogCheck> => {
    const at = now();
    const work: { g: Group; database: string; due: LocalSlot }[] = [];
    for (const g of all) {
      const { dueSlot } = overdueState({
        schedule: g.schedule,
        timezone: g.timezone,
        graceMs,
        lastSuccess: undefined,
        now: at,
      });
      if (!dueSlot) continue;
      for (const database of g.databases) {
        const k = known.get(database);
        // What is known proves a success after the due slot: nothing to read.
        if (k && !isMissed(dueSlot, k.last ?? undefined)) continue;
        // Overdue and alerted for this slot already: read again only now and then.
        if (k?.alerted === dueSlot.local && at.getTime() - k.readAt < recheckMs) continue;
        work.push({ g, database, due: dueSlot });
      }
    }
    const failures: { database: string; err: string }[] = [];
    const results = await mapLimit(work, READS, async ({ g, database, due }) => {
      if (stopped) return undefined;
      try {
        return { database, ...(await checkDatabase(g, database, due, at)) };
      } catch (err) {
        failures.push({ database, err: errorMessage(err) });
        return undefined;
      }
    });
    // One line per check, not one per database: storage or Redis out of reach fails them all alike.
    if (failures.length > 0) {
      logger.warn(
        { failed: failures.length, databases: failures.slice(0, 10).map((f) => f.database) },
        `watchdog: could not check the last backup of ${failures.length} database(s) (tried again at the ` +
          `next check): ${failures[0]!.err}`,
      );
    }
    done++;
    const overdue = [...known.entries()].filter(([, k]) => k.alerted !== undefined).map(([d]) => d);
    const raised = results.filter((r) => r?.raised).length;
    logger.debug({ read: work.length, overdue: overdue.length, raised }, 'watchdog check');
    return { read: work.length, overdue, raised };
  };

  const check = (): Promise<WatchdogCheck> => {
    // One at a time: a check asked for while one runs waits for it, then runs.
    const previous = running ?? Promise.resolve(undefined);
    const next = previous.then(
      () => runCheck(),
      () => runCheck(),
    );
    running = next;
    void next.finally(() => {
      if (running === next) running = undefined;
    });
    return next;
  };

  /** The next check: in `everyMs`, or earlier when a slot's grace runs out before that. */
  const arm = (): void => {
    if (stopped) return;
    const at = now().getTime();
    let wait = everyMs;
    for (const g of all) {
      const due = nextSlot(g.schedule, g.timezone, new Date(at - graceMs)).at.getTime() + graceMs;
      wait = Math.min(wait, Math.max(0, due - at) + 50);
    }
    timer = setTimeout(() => {
      void check()
        .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'watchdog check failed'))
        .finally(arm);
    }, wait);
  };

  void check()
    .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'watchdog check failed'))
    .finally(arm);

  return {
    check,
    checks: () => done,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
