/**
 * Cron and time-zone helpers with no scheduler state: validation of settings (used by config) and the pure
 * wall-clock arithmetic that scheduler/slots and catalog/retention share.
 */
import cronParser from 'cron-parser';
import { ConfigError } from './errors.js';

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(tz, f);
  }
  return f;
}

const offsets = new Map<string, number>();

/**
 * The UTC offset of `tz` at instant `ms`, in milliseconds. Time zones change offset only on whole minutes, so
 * offsets are remembered per minute: schedules that fire every second stay cheap.
 */
export function offsetAt(ms: number, tz: string): number {
  const minute = Math.floor(ms / 60_000) * 60_000;
  const key = `${tz}|${minute}`;
  let offset = offsets.get(key);
  if (offset === undefined) {
    const parts: Record<string, number> = {};
    for (const p of formatter(tz).formatToParts(new Date(minute))) {
      if (p.type !== 'literal') parts[p.type] = Number(p.value);
    }
    const local = Date.UTC(parts.year!, parts.month! - 1, parts.day, parts.hour, parts.minute, parts.second);
    offset = local - minute;
    if (offsets.size > 50_000) offsets.clear();
    offsets.set(key, offset);
  }
  return offset;
}

/** The wall-clock time in `tz` at instant `ms`, as milliseconds of a naive (UTC-labelled) date. */
export function localMs(ms: number, tz: string): number {
  return ms + offsetAt(ms, tz);
}

/** The instant of a naive local time in `tz`, by the rules above (first of two; the end of a gap). */
export function instantOf(naive: number, tz: string): number {
  const offsetBefore = offsetAt(naive - 86_400_000, tz);
  const before = naive - offsetBefore;
  const after = naive - offsetAt(naive + 86_400_000, tz);
  const valid = [before, after].filter((t) => localMs(t, tz) === naive);
  if (valid.length > 0) return Math.min(...valid);
  // In a gap: find the instant the clocks jumped, between the two readings.
  let lo = Math.min(before, after);
  let hi = Math.max(before, after);
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (offsetAt(mid, tz) === offsetBefore) lo = mid;
    else hi = mid;
  }
  return Math.ceil(hi / 1000) * 1000;
}

export function formatLocal(naive: number): string {
  return new Date(naive).toISOString().slice(0, 19);
}

/** `where` names the setting: `sep` and `exampleKey` let YAML say `databases[0].schedule: ...` (default: `NAME=`). */
export function validateCron(expr: string, where: string, sep = '=', exampleKey = where): void {
  const fields = expr.trim().split(/\s+/);
  if (fields.length < 5 || fields.length > 6) {
    throw new ConfigError(
      `${where}${sep}${JSON.stringify(expr)} is not a cron expression: expected 5 fields (minute hour day month ` +
        `weekday) or 6 (with seconds first), e.g. ${exampleKey}${sep}"0 2 * * *" for 02:00 every night`,
    );
  }
  try {
    cronParser.parseExpression(expr, { tz: 'UTC' }).next();
  } catch (err) {
    throw new ConfigError(
      `${where}${sep}${JSON.stringify(expr)} is not a valid cron expression (${(err as Error).message}), ` +
        `e.g. ${exampleKey}${sep}"0 2 * * *" for 02:00 every night`,
    );
  }
}

export function validateTimezone(
  tz: string,
  where: string,
  example = 'Europe/Paris',
  sep = '=',
  exampleKey = where,
): string {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new ConfigError(
      `${where}${sep}${JSON.stringify(tz)} is not a known IANA time zone, e.g. ${exampleKey}${sep}${example}`,
    );
  }
  return tz;
}
