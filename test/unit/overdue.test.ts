import { describe, expect, it } from 'vitest';
import { overdueState } from '../../src/scheduler/overdue.js';

const nightly = { schedule: '0 2 * * *', timezone: 'UTC' };
const at = (iso: string) => new Date(iso);

describe('overdueState', () => {
  it('is not overdue while the latest slot is within its grace', () => {
    const s = overdueState({
      ...nightly,
      graceMs: 2 * 3_600_000,
      lastSuccess: at('2026-11-25T02:10:00Z'),
      now: at('2026-11-26T03:59:59Z'),
    });
    expect(s.overdue).toBe(false);
    expect(s.dueSlot?.local).toBe('2026-11-25T02:00:00');
    expect(s.nextSlot.local).toBe('2026-11-27T02:00:00');
  });

  it('is overdue once slot + grace passed without a success after the slot, naming the missed slot', () => {
    const s = overdueState({
      ...nightly,
      graceMs: 2 * 3_600_000,
      lastSuccess: at('2026-11-25T02:10:00Z'),
      now: at('2026-11-26T04:00:00Z'),
    });
    expect(s.overdue).toBe(true);
    expect(s.missedSlot?.local).toBe('2026-11-26T02:00:00');
  });

  it('a success that finished after the slot clears it; one that finished before does not', () => {
    const base = { ...nightly, graceMs: 0, now: at('2026-11-26T12:00:00Z') };
    expect(overdueState({ ...base, lastSuccess: at('2026-11-26T02:00:30Z') }).overdue).toBe(false);
    expect(overdueState({ ...base, lastSuccess: at('2026-11-26T01:59:59Z') }).overdue).toBe(true);
  });

  it('a database never backed up is overdue after its first due slot', () => {
    const s = overdueState({
      ...nightly,
      graceMs: 0,
      lastSuccess: undefined,
      now: at('2026-11-26T02:00:00Z'),
    });
    expect(s.overdue).toBe(true);
    expect(s.missedSlot?.at.toISOString()).toBe('2026-11-26T02:00:00.000Z');
  });

  it('follows the schedule time zone', () => {
    const s = overdueState({
      schedule: '0 2 * * *',
      timezone: 'Europe/Paris',
      graceMs: 0,
      lastSuccess: at('2026-11-25T01:05:00Z'),
      now: at('2026-11-26T01:30:00Z'),
    });
    // 02:00 Paris is 01:00 UTC in November: the 26th's slot is due and missed.
    expect(s.missedSlot?.local).toBe('2026-11-26T02:00:00');
  });
});
