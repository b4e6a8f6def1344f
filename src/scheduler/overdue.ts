/**
 * When a database's backups are overdue, as a pure function of (schedule, last success, grace, now): the one
 * rule that the watchdog (scheduler), `/metrics` (`pgshelf_backup_overdue`), the dashboard and `pgshelf status`
 * all apply, so they never disagree.
 *
 * A slot is *due* once its grace has run out (slot time + grace <= now). The database is overdue when its latest
 * due slot has no successful backup that finished at or after the slot's time. Each due slot is its own missed
 * slot: the watchdog alerts once per `missedSlot.local`, and a success clears it.
 */
import { nextSlot, previousSlot, type LocalSlot } from './slots.js';

export interface OverdueInput {
  readonly schedule: string;
  readonly timezone: string;
  /** PGSHELF_OVERDUE_GRACE in milliseconds; 0 allowed. */
  readonly graceMs: number;
  /** When the newest successful backup finished (its manifest's finishedAt); undefined when there is none. */
  readonly lastSuccess: Date | undefined;
  readonly now: Date;
}

export interface OverdueState {
  readonly overdue: boolean;
  /** The latest slot whose grace has run out; undefined when none fired in the look-back window. */
  readonly dueSlot: LocalSlot | undefined;
  /** When overdue: the slot that has no backup (the dedupe key of `backup.overdue` is its `local`). */
  readonly missedSlot: LocalSlot | undefined;
  /** The next slot after `now`. */
  readonly nextSlot: LocalSlot;
}

/** How far back a due slot is looked for: a schedule that fires less often than this is never overdue. */
const LOOKBACK_MS = 400 * 86_400_000;

/**
 * The due and next slots of one schedule at one instant: a few milliseconds of cron arithmetic, remembered for
 * the callers that judge many databases sharing a schedule at the same `now` (a status report of 1,200
 * databases made 1,200 identical computations, ~4 s of CPU).
 */
const slotMemo = new Map<string, { dueSlot: LocalSlot | undefined; nextSlot: LocalSlot }>();

function slotsAt(schedule: string, timezone: string, graceMs: number, now: Date) {
  const key = `${schedule}\u0000${timezone}\u0000${graceMs}\u0000${now.getTime()}`;
  let found = slotMemo.get(key);
  if (!found) {
    found = {
      dueSlot: previousSlot(schedule, timezone, new Date(now.getTime() - graceMs), LOOKBACK_MS),
      nextSlot: nextSlot(schedule, timezone, now),
    };
    if (slotMemo.size >= 1000) slotMemo.clear();
    slotMemo.set(key, found);
  }
  return found;
}

export function overdueState(input: OverdueInput): OverdueState {
  const { schedule, timezone, graceMs, lastSuccess, now } = input;
  const { dueSlot, nextSlot: next } = slotsAt(schedule, timezone, graceMs, now);
  const overdue = dueSlot !== undefined && isMissed(dueSlot, lastSuccess);
  return { overdue, dueSlot, missedSlot: overdue ? dueSlot : undefined, nextSlot: next };
}

/**
 * The rule's comparison alone, for callers that compute one due slot for many databases sharing a schedule
 * (overdueState costs a few milliseconds of cron arithmetic; the watchdog has 1,000s of databases).
 */
export function isMissed(dueSlot: LocalSlot, lastSuccess: Date | undefined): boolean {
  return lastSuccess === undefined || lastSuccess < dueSlot.at;
}
