/**
 * What an alert says: one JSON body that JSON receivers read field by field and that Slack- or
 * Mattermost-compatible incoming webhooks show through its `text` field, and the HMAC that signs it.
 */
import { createHmac } from 'node:crypto';
import os from 'node:os';
import type { JobKind } from '../jobs/registry.js';
import { withoutRowData } from '../postgres/child.js';

export const ALERT_EVENTS = [
  'backup.failed',
  'backup.recovered',
  'backup.overdue',
  'drill.failed',
  'prune.blocked',
  'restore.succeeded',
  'restore.failed',
] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

/** The header that carries `sha256=<hex HMAC-SHA256 of the body>` when PGSHELF_WEBHOOK_SECRET is set. */
export const SIGNATURE_HEADER = 'X-Pgshelf-Signature';

/** An alert before it is written out: `text` and `host` are added by alertBody. */
export interface AlertInput {
  readonly event: AlertEvent;
  readonly database: string | null;
  /** The queued job it is about; null for `backup.overdue` (no job ran: that is the point). */
  readonly job: { readonly id: string; readonly kind: JobKind; readonly attempt: number } | null;
  /** Why: the job's error (the tail of pg_dump's or psql's stderr, row data cut out), or prune's refusal. */
  readonly reason: string | null;
  readonly occurredAt: Date;
  readonly startedAt?: Date;
  readonly finishedAt?: Date;
  /** `backup.overdue`: the slot that has no backup (its local wall-clock time, instant and time zone). */
  readonly slot?: { readonly local: string; readonly at: Date; readonly timezone: string };
  /** `backup.overdue`: when the newest successful backup finished, null when there is none. */
  readonly lastSuccess?: Date | null;
  /** `restore.*`: the database restored into. */
  readonly into?: string;
  /** Grace (minutes) of `backup.overdue`. */
  readonly graceMinutes?: number;
}

/** Longest reason sent: the tail of a tool's stderr is what explains a failure. */
const REASON_MAX = 2000;

/** The job's error as an alert may carry it: row data cut out (again), at most REASON_MAX characters, tail kept. */
export function alertReason(message: string): string {
  const text = message
    .split('\n')
    .map((l) => withoutRowData(l.trimEnd()))
    .filter((l) => l !== '')
    .join('\n');
  if (text.length <= REASON_MAX) return text;
  const first = text.split('\n')[0]!.slice(0, 200);
  return `${first}\n…\n${text.slice(-(REASON_MAX - first.length - 3))}`;
}

const iso = (d: Date | undefined | null): string | undefined | null => (d == null ? d : d.toISOString());

/** One readable line: what Slack and Mattermost show. */
export function alertText(a: AlertInput): string {
  const db = a.database === null ? 'an unknown database' : `"${a.database}"`;
  const job = a.job ? ` (job ${a.job.id}, attempt ${a.job.attempt})` : '';
  const why = a.reason ? `: ${a.reason.split('\n').slice(-3).join(' ')}` : '';
  switch (a.event) {
    case 'backup.failed':
      return `pgshelf: backup of ${db} failed${job}${why}`;
    case 'backup.recovered':
      return `pgshelf: backup of ${db} succeeded again${job}`;
    case 'backup.overdue': {
      const last = a.lastSuccess ? `last success ${a.lastSuccess.toISOString()}` : 'no successful backup yet';
      const slot = a.slot ? ` of the ${a.slot.local} slot (${a.slot.timezone})` : '';
      const grace = a.graceMinutes !== undefined ? ` plus ${a.graceMinutes} min grace` : '';
      return `pgshelf: backup of ${db} is overdue: no successful backup${slot}${grace}; ${last}`;
    }
    case 'drill.failed':
      return `pgshelf: restore drill of ${db} failed${job}${why}`;
    case 'prune.blocked':
      return `pgshelf: prune of ${db} deleted nothing${job}${why}`;
    case 'restore.succeeded':
      return `pgshelf: restore of ${db}${a.into ? ` into "${a.into}"` : ''} succeeded${job}`;
    case 'restore.failed':
      return `pgshelf: restore of ${db}${a.into ? ` into "${a.into}"` : ''} failed${job}${why}`;
  }
}

/** The exact bytes sent (and signed): fields in a fixed order, `text` for chat webhooks, `host` that sent it. */
export function alertBody(a: AlertInput, host = os.hostname()): string {
  return JSON.stringify({
    event: a.event,
    database: a.database,
    job: a.job,
    reason: a.reason,
    occurredAt: iso(a.occurredAt),
    startedAt: iso(a.startedAt),
    finishedAt: iso(a.finishedAt),
    slot: a.slot ? { local: a.slot.local, at: iso(a.slot.at), timezone: a.slot.timezone } : undefined,
    lastSuccess: iso(a.lastSuccess),
    into: a.into,
    host,
    text: alertText(a),
  });
}

/** `sha256=<hex HMAC-SHA256 of body, keyed with secret>`: the X-Pgshelf-Signature header's value. */
export function signBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}
