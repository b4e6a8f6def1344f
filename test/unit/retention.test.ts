import { describe, expect, it } from 'vitest';
import type { Retention } from '../../src/config/index.js';
import { bucketOf, isoWeek, selectRetention, type RetentionCandidate } from '../../src/catalog/retention.js';

const none: Retention = { keepLast: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0, minKeep: 1 };

/** One backup per entry, id b<index>, at the given UTC times. */
function backups(times: string[]): RetentionCandidate[] {
  return times.map((t, i) => ({ id: `b${i}`, startedAt: new Date(t) }));
}

/** Nightly backups at 02:00 UTC for `days` days ending on `last`. */
function nightly(last: string, days: number): RetentionCandidate[] {
  const end = Date.parse(`${last}T02:00:00Z`);
  return Array.from({ length: days }, (_, i) => ({
    id: new Date(end - i * 86_400_000).toISOString().slice(0, 10),
    startedAt: new Date(end - i * 86_400_000),
  }));
}

describe('selectRetention', () => {
  it('keeps the newest N with keep-last', () => {
    const s = selectRetention(nightly('2026-11-25', 10), { ...none, keepLast: 3 }, { timezone: 'UTC' });
    expect(s.keep).toEqual(['2026-11-25', '2026-11-24', '2026-11-23']);
    expect(s.delete).toHaveLength(7);
    expect(s.reasons['2026-11-24']).toEqual(['last 2 of 3']);
    expect(s.reasons['2026-11-16']).toEqual(['outside every retention rule']);
  });

  it('applies the default policy (7 last, 7 daily, 4 weekly, 12 monthly) to two years of nightly backups', () => {
    const all = nightly('2026-11-25', 730);
    const s = selectRetention(
      all,
      { keepLast: 7, daily: 7, weekly: 4, monthly: 12, yearly: 0, minKeep: 3 },
      { timezone: 'UTC' },
    );
    // 7 nights, then the newest of each of the 4 newest ISO weeks, then of each of the 12 newest months.
    const weeks = ['2026-11-25', '2026-11-22', '2026-11-15', '2026-11-08'];
    const months = [
      '2026-11-25',
      '2026-10-31',
      '2026-09-30',
      '2026-08-31',
      '2026-07-31',
      '2026-06-30',
      '2026-05-31',
      '2026-04-30',
      '2026-03-31',
      '2026-02-28',
      '2026-01-31',
      '2025-12-31',
    ];
    const expected = new Set([...all.slice(0, 7).map((b) => b.id), ...weeks, ...months]);
    expect(new Set(s.keep)).toEqual(expected);
    expect(s.keep.length + s.delete.length).toBe(730);
    expect(s.reasons['2026-11-15']).toEqual(['weekly 2026-W46']);
    expect(s.reasons['2026-10-31']).toEqual(['monthly 2026-10']);
    expect(s.reasons['2026-11-25']).toEqual([
      'last 1 of 7',
      'daily 2026-11-25',
      'weekly 2026-W48',
      'monthly 2026-11',
      'newest backup',
    ]);
  });

  it('counts buckets that have backups, keeping the newest backup of each', () => {
    const b = backups([
      '2026-11-25T23:00:00Z',
      '2026-11-25T01:00:00Z',
      '2026-11-20T12:00:00Z',
      '2026-11-01T00:00:00Z',
    ]);
    const s = selectRetention(b, { ...none, daily: 2 }, { timezone: 'UTC' });
    expect(s.keep).toEqual(['b0', 'b2']);
    expect(s.delete).toEqual(['b1', 'b3']);
  });

  it("puts backups into days of the schedule's time zone", () => {
    // 23:30 UTC on the 24th is the 25th in Paris, like the 00:30 UTC backup after it.
    const b = backups(['2026-11-25T00:30:00Z', '2026-11-24T23:30:00Z', '2026-11-24T12:00:00Z']);
    expect(selectRetention(b, { ...none, daily: 2 }, { timezone: 'Europe/Paris' }).keep).toEqual([
      'b0',
      'b2',
    ]);
    expect(selectRetention(b, { ...none, daily: 2 }, { timezone: 'UTC' }).keep).toEqual(['b0', 'b1']);
  });

  it('keeps a day intact across a DST change (one bucket per local day)', () => {
    const b = backups(['2026-10-25T23:30:00Z', '2026-10-25T00:30:00Z', '2026-10-24T00:30:00Z']);
    // In Paris: 26 Oct 00:30, 25 Oct 02:30 (CEST, the doubled hour), 24 Oct 02:30.
    const s = selectRetention(b, { ...none, daily: 3 }, { timezone: 'Europe/Paris' });
    expect(s.keep).toEqual(['b0', 'b1', 'b2']);
    expect(s.reasons.b1).toEqual(['daily 2026-10-25']);
  });

  it('uses ISO weeks and years across a year boundary', () => {
    expect(isoWeek(new Date('2026-12-31T12:00:00Z'))).toBe('2026-W53');
    expect(isoWeek(new Date('2027-01-03T12:00:00Z'))).toBe('2026-W53');
    expect(isoWeek(new Date('2027-01-04T12:00:00Z'))).toBe('2027-W01');
    expect(isoWeek(new Date('2024-12-30T12:00:00Z'))).toBe('2025-W01');
    expect(bucketOf('yearly', new Date('2026-12-31T23:30:00Z'), 'Asia/Tokyo')).toBe('2027');
    const b = backups([
      '2027-01-02T10:00:00Z',
      '2026-12-30T10:00:00Z',
      '2026-12-27T10:00:00Z',
      '2025-06-01T10:00:00Z',
    ]);
    expect(selectRetention(b, { ...none, weekly: 2 }, { timezone: 'UTC' }).keep).toEqual(['b0', 'b2']);
    expect(selectRetention(b, { ...none, yearly: 3 }, { timezone: 'UTC' }).keep).toEqual(['b0', 'b1', 'b3']);
  });

  it('never keeps fewer than the minimum, even with every rule at zero', () => {
    const s = selectRetention(nightly('2026-11-25', 5), { ...none, minKeep: 3 }, { timezone: 'UTC' });
    expect(s.keep).toEqual(['2026-11-25', '2026-11-24', '2026-11-23']);
    expect(s.reasons['2026-11-24']).toEqual(['minimum of 3 backups']);
  });

  it('keeps everything when there are fewer backups than the minimum', () => {
    const s = selectRetention(nightly('2026-11-25', 2), { ...none, minKeep: 3 }, { timezone: 'UTC' });
    expect(s.keep).toHaveLength(2);
    expect(s.delete).toEqual([]);
  });

  it('always keeps the newest backup and the newest drill-verified one', () => {
    const all = nightly('2026-11-25', 30);
    const s = selectRetention(
      all,
      { ...none, keepLast: 1, minKeep: 1 },
      { timezone: 'UTC', newestVerified: '2026-11-03' },
    );
    expect(s.keep).toEqual(['2026-11-25', '2026-11-03']);
    expect(s.reasons['2026-11-03']).toEqual(['newest drill-verified backup']);
  });

  it('deletes nothing, and says why, when the latest backup attempt failed', () => {
    const all = nightly('2026-11-25', 30);
    const s = selectRetention(
      all,
      { ...none, keepLast: 1 },
      {
        timezone: 'UTC',
        latestAttemptFailed: { at: '2026-11-26T02:00:00Z', error: 'pg_dump exited with code 1' },
      },
    );
    expect(s.delete).toEqual([]);
    expect(s.keep).toHaveLength(30);
    expect(s.reasons['2026-11-01']![0]).toMatch(
      /latest backup attempt failed .*pg_dump exited with code 1.*deletes nothing/,
    );
  });

  it('is stable for backups started in the same second (ordered by id)', () => {
    const b = [
      { id: 'aaaa', startedAt: new Date('2026-11-25T02:00:00Z') },
      { id: 'bbbb', startedAt: new Date('2026-11-25T02:00:00Z') },
    ];
    expect(selectRetention(b, { ...none, keepLast: 1, minKeep: 1 }, { timezone: 'UTC' }).keep).toEqual([
      'bbbb',
    ]);
  });

  it('handles no backups', () => {
    expect(selectRetention([], { ...none, keepLast: 3 }, { timezone: 'UTC' })).toEqual({
      keep: [],
      delete: [],
      reasons: {},
    });
  });
});
