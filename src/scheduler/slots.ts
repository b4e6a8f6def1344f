/**
 * When a schedule fires, as a pure function of (cron expression, time zone, time).
 *
 * A cron expression describes wall-clock times in its time zone. Each matching wall-clock time ("local slot")
 * fires exactly once, whatever daylight saving does:
 * - a local time that happens twice (clocks go back) fires at its first occurrence only;
 * - a local time that does not exist (clocks go forward) fires when the gap ends (02:30 on a spring-forward
 *   night fires at 03:00 new time).
 * The slot's identity is its local wall-clock time, so replicas and retries agree on it.
 */
import cronParser from 'cron-parser';
import { ConfigError } from '../errors.js';
import { formatLocal, instantOf, localMs, offsetAt } from '../cron.js';

export interface Slot {
  /** Local wall-clock time of the slot, e.g. "2026-03-29T02:30:00" (seconds always present). */
  readonly local: string;
  /** The instant it fires. */
  readonly at: Date;
}

/** How far a slot's local time can sit from the offset read at either end of a range (DST changes are <= 2 h). */
const MARGIN_MS = 3 * 3_600_000;

/** Naive local times matching `expr` strictly after naive time `fromNaive`, in order. */
function* localMatches(expr: string, fromNaive: number): Generator<number> {
  const it = cronParser.parseExpression(expr, { currentDate: new Date(fromNaive), tz: 'UTC' });
  for (;;) yield it.next().getTime();
}

export interface LocalSlot extends Slot {
  /** The naive local time, for iterating in wall-clock order. */
  readonly naive: number;
}

/** The slot after local slot `naive` (in wall-clock order). */
export function slotAfter(expr: string, tz: string, naive: number): LocalSlot {
  for (const next of localMatches(expr, naive)) {
    return { local: formatLocal(next), naive: next, at: new Date(instantOf(next, tz)) };
  }
  throw new Error('unreachable');
}

/** Every slot firing in (from, to], in wall-clock order. */
export function slotsBetween(expr: string, tz: string, from: Date, to: Date, limit = 100_000): LocalSlot[] {
  const out: LocalSlot[] = [];
  // Look a few hours either side in local time: around a DST change a slot's local time and the offset at `from`
  // or `to` disagree by up to the size of the change.
  // Without an offset change near the range, no margin is needed (this keeps per-second schedules cheap).
  const f = from.getTime();
  const t = to.getTime();
  const margin = offsetAt(f - MARGIN_MS, tz) === offsetAt(t + MARGIN_MS, tz) ? 1000 : MARGIN_MS;
  for (const naive of localMatches(expr, localMs(f, tz) - margin)) {
    if (naive > localMs(t, tz) + margin) break;
    const at = instantOf(naive, tz);
    if (at > from.getTime() && at <= to.getTime()) {
      out.push({ local: formatLocal(naive), naive, at: new Date(at) });
      if (out.length >= limit) break;
    }
  }
  return out;
}

/** The first slot firing strictly after `after`. */
export function nextSlot(expr: string, tz: string, after: Date): LocalSlot {
  for (let days = 2; ; days *= 2) {
    const found = slotsBetween(expr, tz, after, new Date(after.getTime() + days * 86_400_000), 1)[0];
    if (found) return found;
    if (days > 4 * 366) throw new ConfigError(`the cron expression "${expr}" never fires`);
  }
}

/** The latest slot that fired at or before `at`, looking back at most `lookbackMs`. */
export function previousSlot(
  expr: string,
  tz: string,
  at: Date,
  lookbackMs = 400 * 86_400_000,
): LocalSlot | undefined {
  // Widening windows keep this cheap for schedules that fire every second as well as for yearly ones.
  for (const window of [120_000, 7_200_000, 2 * 86_400_000, 8 * 86_400_000, lookbackMs]) {
    const w = Math.min(window, lookbackMs);
    const found = slotsBetween(expr, tz, new Date(at.getTime() - w), at).at(-1);
    if (found || w === lookbackMs) return found;
  }
  return undefined;
}
