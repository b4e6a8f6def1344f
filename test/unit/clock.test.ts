import { describe, expect, it } from 'vitest';
import { clockSkew, describeClockSkew } from '../../src/postgres/server.js';

const t = (iso: string): Date => new Date(iso);

describe('clockSkew', () => {
  it('is undefined within a minute either way', () => {
    expect(clockSkew(t('2026-01-01T00:00:59Z'), t('2026-01-01T00:00:59Z'), t('2026-01-01T00:00:00Z'))).toBe(
      undefined,
    );
    expect(clockSkew(t('2026-01-01T00:00:00Z'), t('2026-01-01T00:00:00Z'), t('2026-01-01T00:01:00Z'))).toBe(
      undefined,
    );
  });

  it('reports this host ahead or behind by more than a minute, with both times', () => {
    const ahead = clockSkew(t('2026-01-01T00:05:00Z'), t('2026-01-01T00:05:00Z'), t('2026-01-01T00:00:00Z'));
    expect(ahead).toEqual({
      local: t('2026-01-01T00:05:00Z'),
      server: t('2026-01-01T00:00:00Z'),
      skewMs: 300_000,
    });
    const behind = clockSkew(t('2026-01-01T00:00:00Z'), t('2026-01-01T00:00:00Z'), t('2026-01-01T00:01:01Z'));
    expect(behind?.skewMs).toBe(-61_000);
    const text = describeClockSkew(ahead!, 'db.internal:5432');
    expect(text).toContain('2026-01-01T00:05:00.000Z');
    expect(text).toContain('2026-01-01T00:00:00.000Z');
    expect(text).toContain('300 s ahead');
    expect(describeClockSkew(behind!, 'db:5432')).toContain('61 s behind');
  });

  it('takes the midpoint of the round trip and does not blame a slow query on the clock', () => {
    // 100 s round trip: the server's time may be anywhere within it.
    expect(clockSkew(t('2026-01-01T00:00:00Z'), t('2026-01-01T00:01:40Z'), t('2026-01-01T00:00:00Z'))).toBe(
      undefined,
    );
    const skew = clockSkew(t('2026-01-01T00:10:00Z'), t('2026-01-01T00:10:02Z'), t('2026-01-01T00:00:00Z'));
    expect(skew?.local).toEqual(t('2026-01-01T00:10:01Z'));
  });
});
