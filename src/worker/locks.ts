/**
 * Cross-worker guards for backups, in Redis: one dump per database at a time, and at most N dumps at once per
 * PostgreSQL server (host:port). Both expire on their own if a worker dies; a running job keeps renewing them.
 */
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';

// KEYS[1] database lock, KEYS[2] host semaphore (sorted set: token -> expiry, in Redis' own clock).
// ARGV: token, ttl ms, host limit. Returns 1 (acquired), -1 (database busy) or -2 (host full).
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -2 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`;

const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('ZADD', KEYS[2], 'XX', now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`;

export type Acquired = { readonly ok: true; release(): Promise<void> };
export type Refused = { readonly ok: false; readonly reason: 'database-busy' | 'host-full' };

export class BackupGuards {
  private readonly redis: Redis;

  constructor(
    connection: RedisOptions,
    private readonly prefix: string,
    private readonly hostLimit: number,
    private readonly ttlMs = 60_000,
  ) {
    this.redis = new Redis({ ...connection, maxRetriesPerRequest: 3, lazyConnect: true });
  }

  async acquire(database: string, host: string, port: number): Promise<Acquired | Refused> {
    const keys = [
      `${this.prefix}:guard:database:${encodeURIComponent(database)}`,
      `${this.prefix}:guard:host:${encodeURIComponent(`${host}:${port}`)}`,
    ];
    const token = randomBytes(12).toString('hex');
    const got = (await this.redis.eval(ACQUIRE, 2, ...keys, token, this.ttlMs, this.hostLimit)) as number;
    if (got === -1) return { ok: false, reason: 'database-busy' };
    if (got === -2) return { ok: false, reason: 'host-full' };
    const timer = setInterval(() => {
      this.redis.eval(RENEW, 2, ...keys, token, this.ttlMs).catch(() => undefined);
    }, this.ttlMs / 3);
    timer.unref();
    let released = false;
    return {
      ok: true,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        await this.redis.eval(RELEASE, 2, ...keys, token).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }
}
