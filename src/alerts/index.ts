/**
 * Alerts: webhooks (PGSHELF_WEBHOOK_URL, a database's webhook_url) get a signed JSON body per event, ping URLs
 * (PGSHELF_PING_URL, ping_url) healthchecks.io-style pings. The worker's job events are subscribed to (jobs know
 * nothing of alerts) and the scheduler's watchdog raises `backup.overdue`. Delivery is the courier's: nothing
 * here ever fails or waits for a job.
 *
 * `backup.recovered` is the first success after a failure (or an overdue slot) across workers, schedulers and
 * restarts: each database's state lives in Redis, and a success swaps it to `ok` atomically, so exactly one
 * success sees the `failed` it replaces. A command run `--in-process` without Redis brings its own state
 * (src/alerts/in-process.ts).
 */
import { Redis } from 'ioredis';
import os from 'node:os';
import { waitAtMost } from '../concurrency.js';
import { knownTarget, type AlertTargets, type Config } from '../config/index.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { alertStateKey, overdueAlertKey, redisConnection, RedisHealth } from '../queues.js';
import type { JobEventMap, JobEvents } from '../worker/events.js';
import { Courier, type CourierOptions } from './courier.js';
import {
  alertBody,
  alertReason,
  alertText,
  SIGNATURE_HEADER,
  signBody,
  type AlertEvent,
  type AlertInput,
} from './payload.js';

export {
  ALERT_EVENTS,
  SIGNATURE_HEADER,
  alertBody,
  signBody,
  type AlertEvent,
  type AlertInput,
} from './payload.js';

export interface AlertsOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Delivery tuning (timeouts, tries, backoff); the defaults suit production. */
  readonly delivery?: Omit<CourierOptions, 'logger'>;
  /** Named in every body as `host` (default: this machine's host name). */
  readonly host?: string;
  /** Where "the last backup failed" is kept, for `backup.recovered` (default: Redis, shared by every process). */
  readonly state?: AlertState;
}

/** A database's alert state as backups end: what decides `backup.recovered`. */
export interface AlertState {
  /** Records a backup that failed for good. */
  failed(database: string): Promise<void>;
  /** Records a success; true when it ends a failure (or an overdue slot): `backup.recovered` is due. */
  succeeded(database: string): Promise<boolean>;
}

export type PingKind = 'start' | 'success' | 'fail';

export interface Alerts {
  /** Sends an alert to its database's webhooks (the shared ones when it has none) and logs it. Returns at once. */
  raise(alert: AlertInput): void;
  /** Pings the database's ping URLs (healthchecks.io style). Returns at once. */
  ping(database: string | undefined, kind: PingKind, body?: string): void;
  /** Subscribes to a worker's job events; returns the unsubscribe function. */
  watch(events: JobEvents): () => void;
  /**
   * Claims the one `backup.overdue` of (database, missed slot) across scheduler replicas and, when this call
   * got it, records the database as overdue (unless it is already `failed`). True: raise the alert.
   */
  claimOverdue(database: string, slot: string, ttlSeconds: number): Promise<boolean>;
  /** The watchdog saw a success after the missed slot: `overdue` -> `ok`; true when this call cleared it. */
  clearOverdue(database: string): Promise<boolean>;
  /** Deliveries done and given up so far (for tests and logs). */
  readonly stats: () => { readonly delivered: number; readonly failed: number; readonly idle: boolean };
  /**
   * Gives state changes still being recorded and queued deliveries at most `graceMs` in all, then closes the
   * Redis connection.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * How long a stopping worker or scheduler lets queued alerts go out (after its jobs have stopped):
 * PGSHELF_SHUTDOWN_GRACE, between 1 and 10 s, so a receiver that does not answer never holds a shutdown long.
 */
export function alertsFlushMs(config: Pick<Config, 'shutdownGraceMs'>): number {
  return Math.min(10_000, Math.max(1_000, config.shutdownGraceMs));
}

/** How long a database's alert state is kept without a change: longer than any sensible schedule's gap. */
const STATE_TTL_S = 400 * 86_400;

// `overdue` never replaces `failed`: the first success clears either, and says `backup.recovered` once.
const MARK_OVERDUE = `
if redis.call('GET', KEYS[1]) == 'failed' then return 0 end
redis.call('SET', KEYS[1], 'overdue', 'EX', ARGV[1])
return 1`;
const CLEAR_OVERDUE = `
if redis.call('GET', KEYS[1]) ~= 'overdue' then return 0 end
redis.call('SET', KEYS[1], 'ok', 'EX', ARGV[1])
return 1`;

const WARN: ReadonlySet<AlertEvent> = new Set([
  'backup.failed',
  'backup.overdue',
  'drill.failed',
  'prune.blocked',
  'restore.failed',
]);

/** `<url>/start`, `<url>/fail`, or `<url>` itself: healthchecks.io's convention (a query string stays last). */
export function pingUrl(base: string, kind: PingKind): string {
  if (kind === 'success') return base;
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${kind}`;
  return url.href;
}

/** Where a database's alerts go: its entry's webhooks and ping URLs, else the environment's (webhooks only). */
export function alertTargets(config: Config, database: string | null | undefined): AlertTargets {
  // Listed, or found by a `servers:` entry (whose webhook_url and ping_url are its databases'), or neither.
  return (database ? knownTarget(config, database)?.alerts : undefined) ?? config.envDefaults.alerts;
}

export function startAlerts(options: AlertsOptions): Alerts {
  const { config, logger } = options;
  const host = options.host ?? os.hostname();
  const courier = new Courier({ logger, ...options.delivery });
  const targets = (database: string | null | undefined) => alertTargets(config, database);

  // Opened on first use: a process whose databases never fail or succeed does not connect.
  let client: Redis | undefined;
  const redis = (): Redis => {
    if (!client) {
      client = new Redis({ ...redisConnection(config), lazyConnect: true, maxRetriesPerRequest: 2 });
      new RedisHealth(config.redisUrl, logger).watch(client);
    }
    return client;
  };
  const stateKey = (database: string) => alertStateKey(config.queuePrefix, database);

  const raise = (alert: AlertInput): void => {
    const body = alertBody(alert, host);
    const text = alertText(alert);
    const log = { alert: alert.event, database: alert.database, jobId: alert.job?.id };
    if (WARN.has(alert.event)) logger.warn(log, text);
    else logger.info(log, text);
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'X-Pgshelf-Event': alert.event,
      ...(config.webhookSecret ? { [SIGNATURE_HEADER]: signBody(body, config.webhookSecret) } : {}),
    };
    for (const url of targets(alert.database).webhooks) {
      courier.send({ url, method: 'POST', body, headers, what: alert.event });
    }
  };

  const ping = (database: string | undefined, kind: PingKind, body = ''): void => {
    if (database === undefined) return;
    for (const base of targets(database).pings) {
      courier.send({
        url: pingUrl(base, kind),
        method: 'POST',
        body,
        headers: { 'Content-Type': 'text/plain; charset=utf-8' },
        what: `ping ${kind}`,
      });
    }
  };

  const redisState: AlertState = {
    failed: async (database) => {
      await redis().set(stateKey(database), 'failed', 'EX', STATE_TTL_S);
    },
    // The first success after `failed` or `overdue` is the one that finds it there.
    succeeded: async (database) => {
      const before = await redis().set(stateKey(database), 'ok', 'EX', STATE_TTL_S, 'GET');
      return before === 'failed' || before === 'overdue';
    },
  };
  const state = options.state ?? redisState;
  const where = options.state ? '' : ' in Redis';

  // State changes under way: close() lets them end (and the backup.recovered they may raise go out) first.
  const recording = new Set<Promise<unknown>>();
  /** A state change that could not be recorded is logged: the alert itself has gone (or goes) regardless. */
  const recordState = (database: string, what: string, op: () => Promise<unknown>): Promise<unknown> => {
    const p = op()
      .catch((err: unknown) =>
        logger.warn(
          { err: errorMessage(err), database },
          `could not record the alert state (${what})${where}: a later backup.recovered may be missed`,
        ),
      )
      .finally(() => recording.delete(p));
    recording.add(p);
    return p;
  };

  type Ended = JobEventMap['job:succeeded'] | JobEventMap['job:failed'];
  const times = (e: Ended) => {
    const finishedAt = new Date();
    return { occurredAt: finishedAt, finishedAt, startedAt: new Date(finishedAt.getTime() - e.durationMs) };
  };
  const jobOf = (e: Ended) => ({ id: e.jobId, kind: e.kind, attempt: e.attempt });

  const watch = (events: JobEvents): (() => void) => {
    const off = [
      events.on('job:started', (e) => {
        if (e.kind === 'backup') ping(e.database, 'start');
      }),
      events.on('job:succeeded', (e) => {
        const database = e.database ?? null;
        if (e.kind === 'backup') {
          ping(e.database, 'success');
          if (database === null) return;
          void recordState(database, 'ok', async () => {
            if (await state.succeeded(database)) {
              raise({ event: 'backup.recovered', database, job: jobOf(e), reason: null, ...times(e) });
            }
          });
        } else if (e.kind === 'restore') {
          const into = (e.result as { database?: unknown } | undefined)?.database;
          raise({
            event: 'restore.succeeded',
            database,
            job: jobOf(e),
            reason: null,
            ...times(e),
            ...(typeof into === 'string' ? { into } : {}),
          });
        } else if (e.kind === 'prune') {
          const r = e.result as { blocked?: unknown; dryRun?: unknown } | undefined;
          if (typeof r?.blocked === 'string' && r.dryRun !== true) {
            raise({ event: 'prune.blocked', database, job: jobOf(e), reason: r.blocked, ...times(e) });
          }
        }
      }),
      events.on('job:failed', (e) => {
        const database = e.database ?? null;
        const reason = alertReason(e.message);
        const event = (
          { backup: 'backup.failed', drill: 'drill.failed', restore: 'restore.failed' } as const
        )[e.kind as 'backup' | 'drill' | 'restore'] as AlertEvent | undefined;
        if (event === undefined) return;
        raise({ event, database, job: jobOf(e), reason, ...times(e) });
        if (e.kind === 'backup') {
          ping(e.database, 'fail', reason);
          if (database !== null) {
            void recordState(database, 'failed', () => state.failed(database));
          }
        }
      }),
    ];
    return () => off.forEach((f) => f());
  };

  return {
    raise,
    ping,
    watch,
    claimOverdue: async (database, slot, ttlSeconds) => {
      const claimed = await redis().set(
        overdueAlertKey(config.queuePrefix, database, slot),
        new Date().toISOString(),
        'EX',
        ttlSeconds,
        'NX',
      );
      if (claimed !== 'OK') return false;
      await recordState(database, 'overdue', () =>
        redis().eval(MARK_OVERDUE, 1, stateKey(database), STATE_TTL_S),
      );
      return true;
    },
    clearOverdue: async (database) =>
      (await redis().eval(CLEAR_OVERDUE, 1, stateKey(database), STATE_TTL_S)) === 1,
    stats: () => ({ delivered: courier.delivered, failed: courier.failed, idle: courier.idle }),
    close: async (graceMs) => {
      const deadline = Date.now() + graceMs;
      const left = () => Math.max(0, deadline - Date.now());
      // A success's state change decides its backup.recovered: it is queued only once the change is recorded.
      if (recording.size > 0) await waitAtMost(Promise.all(recording), left());
      await courier.drain(left());
      if (client) {
        // QUIT lets a state change cut off above through; with Redis unreachable it would wait, so not for long.
        const c = client;
        await waitAtMost(
          c.quit().catch(() => undefined),
          Math.min(2000, left()),
        );
        c.disconnect();
      }
    },
  };
}
