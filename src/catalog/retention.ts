/**
 * Which backups to keep: keep-last N plus grandfather-father-son buckets (the newest backup of each of the
 * newest N days, ISO weeks, months and years that have backups, in the schedule's time zone), plus safety rules
 * that win over everything: the newest backup and the newest drill-verified one are always kept, never fewer
 * than `minKeep` remain, and nothing is deleted while the latest backup attempt is a failure.
 * A pure function: the prune job feeds it a listing and deletes what it says.
 */
import type { Retention } from '../config/index.js';
import { localMs } from '../cron.js';

export interface RetentionCandidate {
  readonly id: string;
  readonly startedAt: Date;
}

export interface RetentionOptions {
  readonly timezone: string;
  /** Id of the newest backup a restore drill verified, if any. */
  readonly newestVerified?: string;
  /** Set when the most recent backup attempt failed: nothing may be deleted. */
  readonly latestAttemptFailed?: { readonly at: string; readonly error: string };
  /** Any other reason nothing may be deleted (e.g. the attempt marker cannot be read). */
  readonly hold?: string;
}

export interface RetentionSelection {
  /** Ids, newest first. */
  readonly keep: string[];
  readonly delete: string[];
  /** Why each backup is kept or deleted. */
  readonly reasons: Record<string, string[]>;
}

type Period = 'daily' | 'weekly' | 'monthly' | 'yearly';

/** ISO 8601 week of a (local, UTC-labelled) date: e.g. 2026-W01. */
export function isoWeek(naive: Date): string {
  const d = new Date(Date.UTC(naive.getUTCFullYear(), naive.getUTCMonth(), naive.getUTCDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day); // the Thursday of this week decides its year
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

export function bucketOf(period: Period, at: Date, timezone: string): string {
  const local = new Date(localMs(at.getTime(), timezone));
  const iso = local.toISOString();
  switch (period) {
    case 'daily':
      return iso.slice(0, 10);
    case 'weekly':
      return isoWeek(local);
    case 'monthly':
      return iso.slice(0, 7);
    case 'yearly':
      return iso.slice(0, 4);
  }
}

export function selectRetention(
  backups: readonly RetentionCandidate[],
  policy: Retention,
  options: RetentionOptions,
): RetentionSelection {
  const sorted = [...backups].sort(
    (a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
  );
  const reasons: Record<string, string[]> = {};
  const keep = new Set<string>();
  const mark = (id: string, reason: string): void => {
    keep.add(id);
    (reasons[id] ??= []).push(reason);
  };

  if (options.latestAttemptFailed || options.hold !== undefined) {
    const why = options.latestAttemptFailed
      ? `the latest backup attempt failed (${options.latestAttemptFailed.at}: ${options.latestAttemptFailed.error}); ` +
        'prune deletes nothing until a backup succeeds'
      : options.hold!;
    for (const b of sorted) mark(b.id, why);
    return { keep: sorted.map((b) => b.id), delete: [], reasons };
  }

  sorted.slice(0, policy.keepLast).forEach((b, i) => mark(b.id, `last ${i + 1} of ${policy.keepLast}`));
  const periods: [Period, number][] = [
    ['daily', policy.daily],
    ['weekly', policy.weekly],
    ['monthly', policy.monthly],
    ['yearly', policy.yearly],
  ];
  for (const [period, count] of periods) {
    if (count <= 0) continue;
    const seen = new Set<string>();
    for (const b of sorted) {
      const bucket = bucketOf(period, b.startedAt, options.timezone);
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      if (seen.size > count) break;
      mark(b.id, `${period} ${bucket}`);
    }
  }
  const newest = sorted[0];
  if (newest) mark(newest.id, 'newest backup');
  if (options.newestVerified && sorted.some((b) => b.id === options.newestVerified)) {
    mark(options.newestVerified, 'newest drill-verified backup');
  }
  for (const b of sorted) {
    if (keep.size >= policy.minKeep) break;
    if (!keep.has(b.id)) mark(b.id, `minimum of ${policy.minKeep} backups`);
  }
  const out: RetentionSelection = { keep: [], delete: [], reasons };
  for (const b of sorted) {
    if (keep.has(b.id)) out.keep.push(b.id);
    else {
      out.delete.push(b.id);
      reasons[b.id] = ['outside every retention rule'];
    }
  }
  return out;
}
