/**
 * Cross-worker guards for backups, in Redis: one dump per database at a time, and at most N dumps at once per
 * PostgreSQL server (host:port). Both expire on their own if a worker dies; a running job keeps renewing them.
 */
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { PgSettings } from '../config/index.js';
import { Db } from '../postgres/connection.js';
import { databaseGuardKey, hostGuardKey } from '../queues.js';

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

// The database lock alone (prune): KEYS[1] database lock; ARGV token, ttl ms.
const ACQUIRE_DATABASE = `
if redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]), 'NX') then return 1 end
return -1
`;

const RENEW_DATABASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 1
`;

const RELEASE_DATABASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
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
    // The worker's queue connections already log Redis outages; without a listener ioredis prints a stack trace
    // to stderr on every reconnect attempt.
    this.redis.on('error', () => undefined);
  }

  /** The database lock and a slot on its server: what a backup holds while it dumps. */
  async acquire(database: string, host: string, port: number): Promise<Acquired | Refused> {
    const keys = [databaseGuardKey(this.prefix, database), hostGuardKey(this.prefix, host, port)];
    const token = randomBytes(12).toString('hex');
    const got = (await this.redis.eval(ACQUIRE, 2, ...keys, token, this.ttlMs, this.hostLimit)) as number;
    if (got === -1) return { ok: false, reason: 'database-busy' };
    if (got === -2) return { ok: false, reason: 'host-full' };
    return this.held(keys, token, RENEW, RELEASE);
  }

  /** The database lock alone: prune holds it so it never runs beside a backup of the same database. */
  async acquireDatabase(database: string): Promise<Acquired | Refused> {
    const keys = [databaseGuardKey(this.prefix, database)];
    const token = randomBytes(12).toString('hex');
    const got = (await this.redis.eval(ACQUIRE_DATABASE, 1, ...keys, token, this.ttlMs)) as number;
    if (got === -1) return { ok: false, reason: 'database-busy' };
    return this.held(keys, token, RENEW_DATABASE, RELEASE_DATABASE);
  }

  private held(keys: string[], token: string, renew: string, release: string): Acquired {
    const timer = setInterval(() => {
      this.redis.eval(renew, keys.length, ...keys, token, this.ttlMs).catch(() => undefined);
    }, this.ttlMs / 3);
    timer.unref();
    let released = false;
    return {
      ok: true,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        await this.redis.eval(release, keys.length, ...keys, token).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }
}

/**
 * Advisory-lock key of "a pgshelf backup runs here" (int4 pair; the first one spells "pgsh"). Advisory locks are
 * scoped to the database the session is connected to, so one constant key taken in the database being backed up
 * is a per-database lock, without hashing names into a shared key space.
 */
const ADVISORY_KEY = [0x70677368, 1] as const;

/**
 * The overlap guard of `backup --in-process` when Redis cannot be reached: a session-level advisory lock in the
 * database itself, held on its own connection while the backup runs (and dropped with the process if it dies).
 * Returns undefined when another session holds it; `release` when taken. A database that cannot be connected
 * to is not locked: the backup then fails on its own, with the reason.
 */
export async function takeAdvisoryBackupLock(
  settings: PgSettings,
): Promise<{ readonly taken: boolean; release(): Promise<void> }> {
  let db: Db;
  try {
    db = await Db.connect(settings);
  } catch {
    return { taken: true, release: () => Promise.resolve() };
  }
  const [row] = await db
    .query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [...ADVISORY_KEY])
    .catch(async (err: unknown) => {
      await db.close();
      throw err;
    });
  if (!row?.ok) {
    await db.close();
    return { taken: false, release: () => Promise.resolve() };
  }
  return {
    taken: true,
    // Closing the session releases the lock.
    release: () => db.close(),
  };
}
