/**
 * Alerts of a job a command runs `--in-process` (backup, restore, drill, prune): the events, bodies and pings a
 * worker sends for the same outcome, through the same subscriber (startAlerts().watch), so that cron running
 * `pgshelf backup --in-process` without any worker is not silent when a backup fails. A database with no
 * webhook and no ping URL gets nothing started: no Redis connection, no storage read.
 *
 * `backup.recovered` needs "did the last backup fail". When Redis answers, that is the state workers keep there
 * (an in-process failure and a worker's success, or the reverse, see each other). Without Redis it is the
 * database's last-attempt marker, read before this backup overwrites it with `running`: every attempt that ran
 * writes it, and only a failure leaves `failed` (a process killed mid-backup leaves `running`, and sent no
 * backup.failed either). It errs towards silence: a failure that could not write the marker (storage down) or
 * never started (another backup held the guard) gets no recovery, and an unreadable marker sends none and says
 * why. The manifests cannot tell: they record successes only.
 */
import { waitAtMost } from '../concurrency.js';
import type { Config } from '../config/index.js';
import { readAttemptMarker, type MarkerRead, type AttemptRecord } from '../catalog/markers.js';
import { errorMessage } from '../errors.js';
import type { JobKind } from '../jobs/registry.js';
import type { Logger } from '../logger.js';
import { inProcessJobId } from '../queues.js';
import type { Storage } from '../storage/index.js';
import { JobEvents } from '../worker/events.js';
import { alertsFlushMs, alertTargets, startAlerts, type Alerts, type AlertState } from './index.js';

export interface InProcessAlertsOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly storage: Storage;
  readonly kind: JobKind;
  /** The database the job is for, as a worker names it; undefined when the settings name none. */
  readonly database: string | undefined;
  /** Whether Redis answers: asked only for a backup that has somewhere to send alerts. */
  readonly redisAnswers: () => Promise<boolean>;
}

export interface InProcessAlerts {
  /** The job is about to run (its guard taken): reads what backup.recovered needs, pings `start`. Never throws. */
  started(): Promise<void>;
  succeeded(result: unknown): void;
  /** The command fails with `err` (whether or not the job got to start). */
  failed(err: unknown): void;
  /** Lets the alerts go out, alertsFlushMs at most in all, as a stopping worker does. Never throws. */
  flush(): Promise<void>;
}

/** Restores, drills and prunes keep no state: their alerts stand alone. */
const NO_STATE: AlertState = { failed: () => Promise.resolve(), succeeded: () => Promise.resolve(false) };

/** Undefined when the job's database has nowhere to send alerts: then nothing is to be done at all. */
export function inProcessAlerts(options: InProcessAlertsOptions): InProcessAlerts | undefined {
  const { config, logger, storage, kind, database } = options;
  const targets = alertTargets(config, database);
  if (targets.webhooks.length === 0 && targets.pings.length === 0) return undefined;
  const events = new JobEvents((err, name) =>
    logger.warn({ err: errorMessage(err), event: name }, 'alert subscriber failed'),
  );
  const createdAt = new Date();
  let startedAt = createdAt.getTime();
  const base = {
    kind,
    jobId: inProcessJobId(kind, database ?? 'default', createdAt),
    database,
    attempt: 1,
  };
  let alerts: Alerts | undefined;
  let closed = false;
  // What runs after the job ended (choosing the state, emitting): flush() waits for it within its bound.
  let tail: Promise<void> = Promise.resolve();

  /** Redis's state when it answers; else, for a backup that ran, its marker as this backup found it. */
  const chooseState = async (before: MarkerRead<AttemptRecord> | Error | undefined) => {
    if (kind !== 'backup' || database === undefined) return NO_STATE;
    if (await options.redisAnswers()) return undefined;
    return before === undefined ? NO_STATE : markerState(before, logger);
  };
  const open = async (before?: MarkerRead<AttemptRecord> | Error): Promise<Alerts | undefined> => {
    if (!alerts && !closed) {
      const state = await chooseState(before);
      if (closed) return undefined;
      alerts = startAlerts({ config, logger, ...(state ? { state } : {}) });
      alerts.watch(events);
    }
    return alerts;
  };
  const later = (emit: () => void): void => {
    tail = tail
      .then(async () => {
        if (await open()) emit();
      })
      .catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'could not raise the alert'));
  };

  return {
    started: async () => {
      try {
        // Read before the backup writes its own `running` over it. A backup runs under its guard, so no other
        // attempt writes it meanwhile.
        const before =
          kind === 'backup' && database !== undefined && !(await options.redisAnswers())
            ? await readAttemptMarker(storage, database).catch((err: unknown) =>
                err instanceof Error ? err : new Error(String(err)),
              )
            : undefined;
        await open(before);
      } catch (err) {
        logger.warn({ err: errorMessage(err) }, 'alerts of this job may be missing');
      }
      startedAt = Date.now();
      events.emit('job:started', base);
    },
    succeeded: (result) => {
      const durationMs = Date.now() - startedAt;
      later(() => events.emit('job:succeeded', { ...base, durationMs, result }));
    },
    failed: (err) => {
      const durationMs = Date.now() - startedAt;
      later(() =>
        events.emit('job:failed', {
          ...base,
          durationMs,
          error: err,
          message: errorMessage(err),
          attempts: 1,
        }),
      );
    },
    flush: async () => {
      const flushMs = alertsFlushMs(config);
      const deadline = Date.now() + flushMs;
      await waitAtMost(tail, flushMs);
      closed = true;
      await alerts?.close(Math.max(0, deadline - Date.now())).catch(() => undefined);
    },
  };
}

/**
 * `backup.recovered` from the marker this backup found: due when that attempt failed. Its own failure is
 * recorded by the backup itself (the marker), so there is nothing more to write.
 */
function markerState(before: MarkerRead<AttemptRecord> | Error, logger: Logger): AlertState {
  return {
    failed: () => Promise.resolve(),
    succeeded: (database) => {
      if (before instanceof Error || before.state === 'invalid') {
        const why = before instanceof Error ? errorMessage(before) : before.problem;
        logger.warn(
          { database },
          `no backup.recovered decided: Redis does not answer and the last-attempt marker could not be read ` +
            `before the backup (${why})`,
        );
        return Promise.resolve(false);
      }
      return Promise.resolve(before.state === 'ok' && before.record.status === 'failed');
    },
  };
}
