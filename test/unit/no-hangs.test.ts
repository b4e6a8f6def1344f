import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import { isRedisConnectionError, lastSlotJobsKey, RedisHealth, slotClaimKey } from '../../src/queues.js';
import { claimTtlSeconds } from '../../src/scheduler/index.js';
import { nextSlot } from '../../src/scheduler/slots.js';

const base = { POSTGRES_DB: 'fractal_db' };

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => { msg: string }[] } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out.push(chunk.toString());
      done();
    },
  });
  return {
    logger: createLogger('info', sink),
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { msg: string }),
  };
}

describe('S3 timeout settings', () => {
  it('default to 10 s to connect and 30 s without a byte, and refuse what is not a number of seconds', () => {
    const s3 = loadConfig({ ...base, PGSHELF_STORAGE: 's3://my-bucket' }).storage;
    expect(s3).toMatchObject({ connectTimeoutMs: 10_000, requestTimeoutMs: 30_000 });
    const set = loadConfig({
      ...base,
      PGSHELF_STORAGE: 's3://my-bucket',
      PGSHELF_S3_CONNECT_TIMEOUT: '3',
      PGSHELF_S3_REQUEST_TIMEOUT: '120',
    }).storage;
    expect(set).toMatchObject({ connectTimeoutMs: 3000, requestTimeoutMs: 120_000 });
    expect(() => loadConfig({ ...base, PGSHELF_S3_REQUEST_TIMEOUT: '30s' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, PGSHELF_S3_REQUEST_TIMEOUT: '30s' })).toThrow(
      /PGSHELF_S3_REQUEST_TIMEOUT="30s" is invalid.*e\.g\. PGSHELF_S3_REQUEST_TIMEOUT=120/,
    );
    expect(() => loadConfig({ ...base, PGSHELF_S3_CONNECT_TIMEOUT: '0' })).toThrow(
      /PGSHELF_S3_CONNECT_TIMEOUT/,
    );
  });
});

describe('Redis connection reports', () => {
  it('tells connection failures from other errors', () => {
    expect(
      isRedisConnectionError(
        Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
      ),
    ).toBe(true);
    expect(isRedisConnectionError(new Error('Connection is closed.'))).toBe(true);
    expect(isRedisConnectionError(new Error('Missing lock for job 42. moveToFinished'))).toBe(false);
  });

  it('logs the first failure, stays quiet for the next ones, says when Redis is back, and logs the next outage', () => {
    const { logger, lines } = capture();
    const health = new RedisHealth('redis://:pw@127.0.0.1:6390', logger, 60_000);
    const refused = new Error('connect ECONNREFUSED 127.0.0.1:6390');
    for (let i = 0; i < 40; i++) health.failed(refused);
    health.ok();
    health.ok();
    health.failed(refused);
    expect(lines().map((l) => l.msg)).toEqual([
      'cannot reach Redis at redis://:***@127.0.0.1:6390 (connect ECONNREFUSED 127.0.0.1:6390); retrying. Start Redis or fix REDIS_URL',
      'Redis is back at redis://:***@127.0.0.1:6390',
      'cannot reach Redis at redis://:***@127.0.0.1:6390 (connect ECONNREFUSED 127.0.0.1:6390); retrying. Start Redis or fix REDIS_URL',
    ]);
  });
});

describe('slot claims', () => {
  it('are named in one place, per kind, database and slot, beside the queues', () => {
    expect(slotClaimKey('pgshelf', 'backup', 'a b', '2026-03-29T02:30:00')).toBe(
      'pgshelf:scheduler:claim:backup:a%20b:2026-03-29T02:30:00',
    );
    expect(lastSlotJobsKey('pgshelf', 'drill')).toBe('pgshelf:scheduler:last:drill');
  });

  it('are kept until the next slot (capped at the 8-day catch-up window) plus an hour', () => {
    const at = new Date('2026-05-01T12:00:00Z');
    const ttl = (expr: string) => claimTtlSeconds({ expr, timezone: 'UTC' }, nextSlot(expr, 'UTC', at));
    expect(ttl('0 2 * * *')).toBe(86_400 + 3600);
    expect(ttl('* * * * * *')).toBe(1 + 3600);
    expect(ttl('0 3 1 * *')).toBe(8 * 86_400 + 3600);
  });
});
