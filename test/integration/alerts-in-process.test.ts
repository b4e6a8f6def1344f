/**
 * Commands run `--in-process` (cron, no worker) raise the alerts and pings a worker would: backup.failed and
 * `/fail`, then backup.recovered and the success ping, from Redis's alert state when it answers and from the
 * last-attempt marker when it does not; prune.blocked, drill.failed, restore.succeeded/failed. The command waits
 * for its deliveries (so they are all in when it exits), at most the flush bound, and a receiver that never
 * answers changes neither its exit code nor its result. With no webhook or ping URL, no Redis connection.
 */
import { createHmac } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { alertStateKey } from '../../src/queues.js';
import { runCli } from '../helpers/cli.js';
import { pgEnv, tempDir, uniquePrefix } from '../helpers/env.js';
import { redis as redisAddress, useCleanup } from '../helpers/lifecycle.js';
import { createDatabase, dropDatabase, uniqueName, withClient } from '../helpers/pg.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { closedPort, silentServer } from '../helpers/silent.js';

const defer = useCleanup();
const SECRET = 'alert-secret-0123456789abcdef';

interface Body {
  event: string;
  database: string | null;
  job: { id: string; kind: string; attempt: number } | null;
  reason: string | null;
  startedAt?: string;
  finishedAt?: string;
  into?: string;
  host: string;
  text: string;
}

const events = (r: Receiver): string[] => r.json<Body>('/hook').map((b) => b.event);
const body = (r: Receiver, event: string): Body => r.json<Body>('/hook').find((b) => b.event === event)!;
const signature = (raw: Buffer): string => `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`;
const downRedis = async (): Promise<Env> => ({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}` });

/** A database name that does not exist yet (its first backup fails), a storage folder, a queue prefix. */
async function fixture(extra: Env): Promise<{ db: string; dir: string; env: Env }> {
  const db = uniqueName();
  defer(() => dropDatabase(db), { keepOnFailure: true });
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const env: Env = {
    ...pgEnv(db),
    PGSHELF_STORAGE: dir,
    PGSHELF_QUEUE_PREFIX: uniquePrefix(),
    PGSHELF_LOG_LEVEL: 'warn',
    ...extra,
  };
  return { db, dir, env };
}

/** The database, with one small table: what is backed up matters not here, only how the job ends. */
async function createSample(db: string): Promise<void> {
  await createDatabase(db);
  await withClient(db, (c) =>
    c.query('CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, $$a$$)'),
  );
}

describe.each([
  ['Redis answering: its alert state, shared with workers', false],
  ['Redis unreachable: the last-attempt marker', true],
])('`backup --in-process` with no worker (%s)', (_name, redisDown) => {
  it('a failure delivers one signed backup.failed and /fail; the next success backup.recovered and the success ping; a second success neither', async () => {
    const hook = await startReceiver(defer);
    const ping = await startReceiver(defer);
    const { db, env: base } = await fixture({
      PGSHELF_WEBHOOK_URL: `${hook.url}/hook`,
      PGSHELF_WEBHOOK_SECRET: SECRET,
      PGSHELF_PING_URL: `${ping.url}/ping/0f1e2d3c?x=1`,
    });
    const env: Env = redisDown ? { ...base, ...(await downRedis()) } : base;

    // 1. The database does not exist: the backup fails, exit 1 as always; its alerts are in when it exits.
    const failed = await runCli(['backup', '--in-process'], env);
    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stderr).toMatch(/does not exist/);
    expect(events(hook)).toEqual(['backup.failed']);
    const delivery = hook.received[0]!;
    expect(delivery.headers['x-pgshelf-signature']).toBe(signature(delivery.raw));
    expect(delivery.headers['x-pgshelf-event']).toBe('backup.failed');
    const alert = JSON.parse(delivery.body) as Body;
    expect(alert).toMatchObject({ event: 'backup.failed', database: db, host: os.hostname() });
    expect(alert.job).toMatchObject({ kind: 'backup', attempt: 1 });
    expect(alert.job!.id).toMatch(/^backup--pgshelf_t_[0-9a-f]+--in-process-\d{8}T\d{6}Z$/);
    expect(alert.reason).toMatch(/does not exist/);
    expect(alert.text).toContain(`backup of "${db}" failed (job ${alert.job!.id}, attempt 1)`);
    expect(Date.parse(alert.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(alert.startedAt!));
    expect(ping.received.map((r) => r.path)).toEqual(['/ping/0f1e2d3c/start?x=1', '/ping/0f1e2d3c/fail?x=1']);
    expect(ping.received[1]!.body).toMatch(/does not exist/);
    if (!redisDown) {
      // The state workers keep: a worker's next success would be the recovery just as well.
      const client = new Redis(redisAddress);
      defer(async () => void (await client.quit()));
      expect(await client.get(alertStateKey(env.PGSHELF_QUEUE_PREFIX!, db))).toBe('failed');
    }

    // 2. The database appears: the next backup succeeds and is the recovery.
    await createSample(db);
    const good = await runCli(['backup', '--in-process'], env);
    expect(good.code, good.stderr).toBe(0);
    expect(events(hook)).toEqual(['backup.failed', 'backup.recovered']);
    const recovered = body(hook, 'backup.recovered');
    expect(recovered).toMatchObject({ database: db, reason: null, job: { kind: 'backup', attempt: 1 } });
    expect(recovered.text).toContain(`backup of "${db}" succeeded again`);
    expect(ping.received.slice(2).map((r) => r.path)).toEqual([
      '/ping/0f1e2d3c/start?x=1',
      '/ping/0f1e2d3c?x=1',
    ]);

    // 3. A second success is no recovery; it pings all the same.
    const again = await runCli(['backup', '--in-process'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(events(hook)).toEqual(['backup.failed', 'backup.recovered']);
    expect(ping.received).toHaveLength(6);
    for (const r of hook.received) expect(r.headers['x-pgshelf-signature']).toBe(signature(r.raw));
    expect(good.stderr + again.stderr).not.toMatch(/Redis/);
  });
});

describe('`backup --in-process` without Redis, the last-attempt marker unreadable', () => {
  it('the success pings, sends no backup.recovered it cannot decide, and says why', async () => {
    const hook = await startReceiver(defer);
    const ping = await startReceiver(defer);
    const {
      db,
      dir,
      env: base,
    } = await fixture({
      PGSHELF_WEBHOOK_URL: `${hook.url}/hook`,
      PGSHELF_PING_URL: `${ping.url}/ping`,
    });
    await createSample(db);
    await mkdir(path.join(dir, db), { recursive: true });
    await writeFile(path.join(dir, db, '.pgshelf-last-attempt.json'), '{"status": "fail');
    const good = await runCli(['backup', '--in-process'], { ...base, ...(await downRedis()) });
    expect(good.code, good.stderr).toBe(0);
    expect(ping.received.map((r) => r.path)).toEqual(['/ping/start', '/ping']);
    expect(events(hook)).toEqual([]);
    expect(good.stderr).toMatch(
      /no backup\.recovered decided: Redis does not answer and the last-attempt marker could not be read before the backup \(.*\.pgshelf-last-attempt\.json is not valid JSON/,
    );
  });
});

describe('other jobs run --in-process', () => {
  it('prune.blocked after a failed backup, drill.failed, restore.succeeded and restore.failed, as a worker sends them; none of them connects to Redis', async () => {
    const hook = await startReceiver(defer);
    const redis = await silentServer();
    defer(() => redis.close());
    const { db, env: base } = await fixture({ PGSHELF_WEBHOOK_URL: `${hook.url}/hook` });
    const env = { ...base, REDIS_URL: `redis://127.0.0.1:${redis.port}` };
    // Backups and prunes take their guard in Redis when it answers: here it is down, so they take PostgreSQL's.
    const guarded = { ...base, ...(await downRedis()) };
    await createSample(db);
    // A backup that succeeds, then one that fails (the role that dumps does not exist).
    const made = await runCli(['backup', '--in-process'], guarded);
    expect(made.code, made.stderr).toBe(0);
    const bad = await runCli(['backup', '--in-process'], {
      ...guarded,
      POSTGRES_USER: 'pgshelf_no_such_role',
    });
    expect(bad.code, bad.stderr).toBe(1);
    const prune = await runCli(['prune', '--in-process'], guarded);
    expect(prune.code, prune.stderr).toBe(0);
    expect(prune.stdout).toMatch(/nothing deleted/);

    // Restores and drills keep no alert state: with webhooks too, nothing of theirs connects to Redis.
    const drill = await runCli(['drill', '--in-process', '--backup', 'no-such-backup'], env);
    expect(drill.code, drill.stderr).toBe(1);
    const into = uniqueName();
    defer(() => dropDatabase(into));
    const restored = await runCli(['restore', '--in-process', '--into', into], env);
    expect(restored.code, restored.stderr).toBe(0);
    const refused = await runCli(['restore', '--in-process', '--into', db], env);
    expect(refused.code, refused.stderr).toBe(1);

    expect(events(hook)).toEqual([
      'backup.failed',
      'prune.blocked',
      'drill.failed',
      'restore.succeeded',
      'restore.failed',
    ]);
    expect(body(hook, 'prune.blocked')).toMatchObject({ database: db, job: { kind: 'prune', attempt: 1 } });
    expect(body(hook, 'prune.blocked').reason).toMatch(/latest backup attempt failed/);
    expect(body(hook, 'drill.failed').reason).toMatch(/no-such-backup/);
    expect(body(hook, 'restore.succeeded')).toMatchObject({ database: db, into });
    expect(body(hook, 'restore.failed').reason).toMatch(/already exists/);
    expect(redis.connections()).toBe(0);
  });
});

describe('delivery never holds up or changes the command', () => {
  it('receivers that never answer: the same exit codes and output, and the command stops waiting at the flush bound', async () => {
    const silent = await startReceiver(defer, 'hang');
    const silentPing = await startReceiver(defer, 'hang');
    // PGSHELF_SHUTDOWN_GRACE=3: a flush bound of 3 s (room for the requests to reach the receivers on a busy
    // machine), against a request timeout of 10 s and 5 tries.
    const { db, env } = await fixture({
      PGSHELF_WEBHOOK_URL: `${silent.url}/hook`,
      PGSHELF_PING_URL: `${silentPing.url}/ping`,
      PGSHELF_SHUTDOWN_GRACE: '3',
    });
    const failed = await runCli(['backup', '--in-process'], env);
    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stderr).toMatch(/does not exist/);
    // The requests reached the receivers and were cut off by the flush bound, not by their own timeout.
    expect(silent.received.map((r) => r.path)).toEqual(['/hook']);
    expect(silentPing.received.map((r) => r.path)).toEqual(['/ping/start', '/ping/fail']);
    expect(failed.stderr).toMatch(
      /alert not delivered to http:\/\/127\.0\.0\.1:\d+\/\*\*\* \(backup\.failed\): cut off at shutdown/,
    );
    expect(failed.stderr).toMatch(/\(ping fail\): cut off at shutdown/);

    await createSample(db);
    const good = await runCli(['backup', '--in-process', '--json'], env);
    expect(good.code, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ ok: true, database: db });
    expect(good.stderr).toMatch(/\(ping success\): cut off at shutdown/);
  });
});

describe('no webhook and no ping URL', () => {
  it('no Redis connection and no word about Redis or alerts, whether the job fails or succeeds', async () => {
    const redis = await silentServer();
    defer(() => redis.close());
    const { db, env: base } = await fixture({});
    const env = { ...base, REDIS_URL: `redis://127.0.0.1:${redis.port}` };
    await createSample(db);
    // A backup takes its guard in Redis when it answers (connecting, as it always has): here Redis is down.
    const made = await runCli(['backup', '--in-process'], { ...base, ...(await downRedis()) });
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).not.toMatch(/Redis|alert/);
    const runs = [
      await runCli(['restore', '--in-process', '--into', db], env),
      await runCli(['drill', '--in-process', '--backup', 'no-such-backup'], env),
    ];
    expect(runs.map((r) => r.code)).toEqual([1, 1]);
    for (const r of runs) expect(r.stderr).not.toMatch(/Redis|alert/);
    expect(redis.connections()).toBe(0);

    // With Redis up, a failing backup takes its guard there as always, and records no alert state.
    const failed = await runCli(['backup', '--in-process'], {
      ...base,
      POSTGRES_USER: 'pgshelf_no_such_role',
    });
    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stderr).not.toMatch(/alert/);
    const client = new Redis(redisAddress);
    defer(async () => void (await client.quit()));
    expect(await client.exists(alertStateKey(base.PGSHELF_QUEUE_PREFIX!, db))).toBe(0);
  });
});
