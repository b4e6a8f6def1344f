import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { instantOf, localMs, validateCron } from '../../src/cron.js';
import { nextSlot, previousSlot, slotsBetween } from '../../src/scheduler/slots.js';

const between = (expr: string, tz: string, from: string, to: string): string[] =>
  slotsBetween(expr, tz, new Date(from), new Date(to)).map((s) => `${s.local} ${s.at.toISOString()}`);

describe('schedule slots', () => {
  it('fires a nightly schedule once per night through both DST changes (Europe/Paris)', () => {
    const spring = between('30 2 * * *', 'Europe/Paris', '2026-03-27T12:00:00Z', '2026-03-30T12:00:00Z');
    expect(spring).toEqual([
      '2026-03-28T02:30:00 2026-03-28T01:30:00.000Z',
      // 02:30 does not exist that night: it runs when the clocks jump, at 03:00 CEST.
      '2026-03-29T02:30:00 2026-03-29T01:00:00.000Z',
      '2026-03-30T02:30:00 2026-03-30T00:30:00.000Z',
    ]);
    const autumn = between('30 2 * * *', 'Europe/Paris', '2026-10-24T12:00:00Z', '2026-10-26T12:00:00Z');
    expect(autumn).toEqual([
      // 02:30 happens twice that night: it runs at the first one only.
      '2026-10-25T02:30:00 2026-10-25T00:30:00.000Z',
      '2026-10-26T02:30:00 2026-10-26T01:30:00.000Z',
    ]);
  });

  it('keeps every local slot of a sub-hourly schedule across a gap (America/New_York)', () => {
    expect(
      between('*/30 1-3 * * *', 'America/New_York', '2026-03-08T05:00:00Z', '2026-03-08T08:00:00Z'),
    ).toEqual([
      '2026-03-08T01:00:00 2026-03-08T06:00:00.000Z',
      '2026-03-08T01:30:00 2026-03-08T06:30:00.000Z',
      '2026-03-08T02:00:00 2026-03-08T07:00:00.000Z',
      '2026-03-08T02:30:00 2026-03-08T07:00:00.000Z',
      '2026-03-08T03:00:00 2026-03-08T07:00:00.000Z',
      '2026-03-08T03:30:00 2026-03-08T07:30:00.000Z',
    ]);
  });

  it('counts 365 nightly runs in a year with two DST changes, each on its own local day', () => {
    const slots = slotsBetween(
      '0 2 * * *',
      'Europe/Paris',
      new Date('2026-01-01T00:00:00Z'),
      new Date('2027-01-01T00:00:00Z'),
    );
    expect(slots).toHaveLength(365);
    expect(new Set(slots.map((s) => s.local.slice(0, 10))).size).toBe(365);
  });

  it('supports seconds, and finds the next and previous slots', () => {
    expect(between('*/20 * * * * *', 'UTC', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z')).toEqual([
      '2026-01-01T00:00:20 2026-01-01T00:00:20.000Z',
      '2026-01-01T00:00:40 2026-01-01T00:00:40.000Z',
      '2026-01-01T00:01:00 2026-01-01T00:01:00.000Z',
    ]);
    expect(nextSlot('0 2 * * *', 'Asia/Tokyo', new Date('2026-05-01T00:00:00Z')).at.toISOString()).toBe(
      '2026-05-01T17:00:00.000Z',
    );
    expect(previousSlot('0 2 * * *', 'UTC', new Date('2026-05-01T02:00:00Z'))?.local).toBe(
      '2026-05-01T02:00:00',
    );
    expect(previousSlot('0 2 * * *', 'UTC', new Date('2026-05-01T01:59:59Z'))?.local).toBe(
      '2026-04-30T02:00:00',
    );
  });

  it('maps local times to instants', () => {
    expect(localMs(Date.parse('2026-07-01T00:00:00Z'), 'Europe/Paris')).toBe(
      Date.parse('2026-07-01T02:00:00Z'),
    );
    expect(instantOf(Date.parse('2026-07-01T02:00:00Z'), 'Europe/Paris')).toBe(
      Date.parse('2026-07-01T00:00:00Z'),
    );
  });

  it.each(['0 2 * *', '61 2 * * *', '0 2 * * * * *', 'nightly', '0 25 * * *'])(
    'rejects %j with an example',
    (expr) => {
      expect(() => validateCron(expr, 'PGSHELF_SCHEDULE')).toThrow(ConfigError);
      expect(() => validateCron(expr, 'PGSHELF_SCHEDULE')).toThrow(/e\.g\. PGSHELF_SCHEDULE="0 2 \* \* \*"/);
    },
  );
});

describe('previousSlot', () => {
  it('finds the slot just before, for frequent and rare schedules alike', () => {
    const at = new Date('2026-11-25T06:00:30.500Z');
    expect(previousSlot('* * * * * *', 'Europe/Paris', at, 8 * 86_400_000)?.local).toBe(
      '2026-11-25T07:00:30',
    );
    expect(previousSlot('0 2 * * 0', 'UTC', at)?.local).toBe('2026-11-22T02:00:00');
    expect(previousSlot('0 2 1 1 *', 'UTC', at, 86_400_000)).toBeUndefined();
  });
});
