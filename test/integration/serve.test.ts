/**
 * `pgshelf serve` over real HTTP, as Prometheus and an on-call engineer use it: metrics after real backups (one
 * failed) and a real drill run by a real worker, parsed with a Prometheus text-format parser; auth off loopback;
 * health while Redis is down; `pgshelf status` as a cron check.
 */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/catalog/manifest.js';
import type { Env } from '../../src/config/index.js';
import type { StatusReport } from '../../src/monitor/index.js';
import { runCli, waitFor } from '../helpers/cli.js';
import { pgEnv, s3Env, tempDir, uniquePrefix } from '../helpers/env.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { daemon, queues, sampleDatabase, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { authHeader, parseMetrics, scrape } from '../helpers/metrics.js';
import { uniqueName } from '../helpers/pg.js';
import { freePort } from '../helpers/ports.js';
import { get, startServe } from '../helpers/serve.js';
import { privateRedis, privateS3rver } from '../helpers/services.js';
import { createBucket } from '../helpers/s3.js';

const defer = useCleanup();

/** Fires once a year: a database without a backup since last 1 January is overdue, one backed up now is not. */
const YEARLY = '0 0 1 1 *';

async function manifestOf(dir: string, database: string): Promise<Manifest> {
  const files = (await readdir(path.join(dir, database), { recursive: true })).filter((f) =>
    f.endsWith('.manifest.json'),
  );
  expect(files).toHaveLength(1);
  return JSON.parse(await readFile(path.join(dir, database, files[0]!), 'utf8')) as Manifest;
}

async function emptyStorage(): Promise<Env> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return { PGSHELF_STORAGE: dir, PGSHELF_QUEUE_PREFIX: uniquePrefix() };
}

describe('pgshelf serve', () => {
  it('serves the metrics of a real backup, a failed backup and a drill, read from storage and Redis', async () => {
    const fixture = await workerFixture(defer, { rows: 50, env: { PGSHELF_SCHEDULE: YEARLY } });
    const { db: a, dir } = fixture;
    // b: configured here (PGSHELF_CONFIG) and never backed up, so overdue; c: backed up into the same storage by
    // another deployment, so found in storage only.
    const b = uniqueName();
    const c = await sampleDatabase(defer, 20);
    const config = path.join(dir, 'databases.yaml');
    await writeFile(config, `databases:\n  - name: ${b}\n`);
    const env: Env = { ...fixture.env, PGSHELF_CONFIG: config };

    const worker = daemon('worker', env, defer);
    await waitFor('the worker', () => worker.stderr().includes('worker started'));
    const backup = await runCli(['backup', '--json'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const drill = await runCli(['drill', '--json'], env);
    expect(drill.code, drill.stderr).toBe(0);
    await jobs({ ...pgEnv(c), PGSHELF_STORAGE: dir }).backup({}, ctx());
    // The server is gone (nothing listens on that port): a real failed attempt, recorded in the marker.
    const closed = await freePort();
    await expect(
      jobs({ ...env, POSTGRES_PORT: String(closed) }).backup({ database: a }, ctx()),
    ).rejects.toThrow();

    const manifest = await manifestOf(dir, a);
    const drilled = manifest.drill!;
    const attempt = JSON.parse(await readFile(path.join(dir, a, '.pgshelf-last-attempt.json'), 'utf8')) as {
      status: string;
      at: string;
    };
    expect(attempt.status).toBe('failed');
    const archiveBytes = (await stat(path.join(dir, manifest.archive.key))).size;

    const served = await startServe(env, defer);
    const m = await scrape(served.url);
    const at = (iso: string): number => Date.parse(iso) / 1000;
    const A = { database: a };
    expect(m.families.get('pgshelf_backup_last_success_timestamp_seconds')?.type).toBe('GAUGE');
    expect(m.value('pgshelf_backup_last_success_timestamp_seconds', A)).toBe(at(manifest.finishedAt));
    expect(m.value('pgshelf_backup_last_attempt_timestamp_seconds', A)).toBe(at(attempt.at));
    expect(m.value('pgshelf_backup_last_status', A)).toBe(0);
    expect(m.value('pgshelf_backup_running', A)).toBe(0);
    expect(m.value('pgshelf_backup_last_duration_seconds', A)).toBe(manifest.durationMs / 1000);
    expect(m.value('pgshelf_backup_last_size_bytes', A)).toBe(manifest.archive.bytes);
    expect(manifest.archive.bytes).toBe(archiveBytes);
    expect(m.value('pgshelf_backups_stored', A)).toBe(1);
    expect(m.value('pgshelf_backups_stored_bytes', A)).toBe(archiveBytes);
    expect(m.value('pgshelf_backup_overdue', A)).toBe(0);
    expect(m.value('pgshelf_drill_last_success_timestamp_seconds', A)).toBe(at(drilled.at));
    expect(m.value('pgshelf_drill_last_restore_seconds', A)).toBe(drilled.restoreMs / 1000);
    expect(m.value('pgshelf_drill_last_status', A)).toBe(1);
    expect(m.value('pgshelf_database_configured', A)).toBe(1);

    // b: configured, no backup since the yearly slot: overdue, and no success to report.
    expect(m.value('pgshelf_backup_overdue', { database: b })).toBe(1);
    expect(m.value('pgshelf_backups_stored', { database: b })).toBe(0);
    expect(m.value('pgshelf_backup_last_success_timestamp_seconds', { database: b })).toBeUndefined();
    // c: in storage only: its backup counts, but no schedule here says whether it is overdue.
    expect(m.value('pgshelf_database_configured', { database: c })).toBe(0);
    expect(m.value('pgshelf_backups_stored', { database: c })).toBe(1);
    expect(m.value('pgshelf_backup_last_status', { database: c })).toBe(1);
    expect(m.value('pgshelf_backup_overdue', { database: c })).toBeUndefined();

    // The queues, as BullMQ counts them, and the worker, by name (host:pid).
    expect(m.value('pgshelf_jobs', { queue: 'backup', state: 'completed' })).toBe(1);
    expect(m.value('pgshelf_jobs', { queue: 'drill', state: 'completed' })).toBe(1);
    expect(m.value('pgshelf_jobs', { queue: 'backup', state: 'failed' })).toBe(0);
    expect(m.value('pgshelf_workers')).toBe(1);
    expect(m.value('pgshelf_redis_up')).toBe(1);
    expect(m.value('pgshelf_storage_up')).toBe(1);
    expect(m.value('pgshelf_status_up')).toBe(1);
    const api = await get(served, 'api/status');
    const report = api.body as StatusReport;
    expect(report.queues.ok && report.queues.workers.map((w) => w.name)).toEqual([
      expect.stringMatching(new RegExp(`:${worker.child.pid}$`)),
    ]);
    expect(report.databases.map((d) => [d.name, d.configured, d.failing])).toEqual([
      ...[
        [a, true, true],
        [b, true, true],
      ].sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
      [c, false, false],
    ]);

    // `pgshelf status` shows the same, and exits 1: a is failing (latest attempt failed), b is overdue.
    const status = await runCli(['status', '--json'], env);
    expect(status.code, status.stderr).toBe(1);
    const json = JSON.parse(status.stdout) as StatusReport & { failing: string[]; ok: boolean };
    expect(json.failing.sort()).toEqual([a, b].sort());
    expect(json.ok).toBe(false);
    const dbA = json.databases.find((d) => d.name === a)!;
    expect(dbA.lastSuccess?.id).toBe(manifest.id);
    expect(dbA.lastAttempt).toMatchObject({ status: 'failed', at: attempt.at });
    expect(dbA.lastDrill).toMatchObject({ backupId: manifest.id, verified: true, at: drilled.at });
    expect(dbA.stored).toEqual({ count: 1, bytes: archiveBytes, orphans: 0 });
    const text = await runCli(['status'], env);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain(`database ${b}`);
    expect(text.stdout).toMatch(/overdue\s+YES/);
    expect(text.stdout).toContain(`backup ${manifest.id}`);
    expect(text.stdout).toMatch(/workers: 1 seen/);
  });

  it('`pgshelf status` exits 0 when every database has its backup, with or without Redis', async () => {
    const { env } = await workerFixture(defer, { rows: 10, env: { PGSHELF_SCHEDULE: YEARLY } });
    const done = await jobs(env).backup({}, ctx());
    const status = await runCli(['status', '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    const json = JSON.parse(status.stdout) as StatusReport & { failing: string[]; ok: boolean };
    expect(json.failing).toEqual([]);
    expect(json.ok).toBe(true);
    expect(json.databases).toHaveLength(1);
    expect(json.databases[0]).toMatchObject({
      name: env.POSTGRES_DB,
      lastSuccess: { id: done.id },
      overdue: { overdue: false },
      stored: { count: 1 },
      problems: [],
    });
    // Redis answered (no worker yet): the queues are counted, and empty.
    expect(json.queues).toMatchObject({ ok: true, workers: [] });

    // Without Redis, the backups are still judged from storage; the queues are unknown, and say why.
    const closed = await freePort();
    const noRedis = await runCli(['status', '--json'], { ...env, REDIS_URL: `redis://127.0.0.1:${closed}` });
    expect(noRedis.code, noRedis.stderr).toBe(0);
    const partial = JSON.parse(noRedis.stdout) as StatusReport;
    expect(partial.databases).toEqual(
      json.databases.map((d) => ({ ...d, lastSuccess: partial.databases[0]!.lastSuccess })),
    );
    expect(partial.databases[0]!.lastSuccess?.id).toBe(done.id);
    expect(partial.queues).toMatchObject({
      ok: false,
      error: expect.stringContaining('REDIS_URL') as unknown,
    });
  });

  it('refuses to start off loopback without PGSHELF_HTTP_TOKEN; with it, every route but /healthz asks for it', async () => {
    const base = await emptyStorage();
    const port = await freePort();
    const refused = await runCli(['serve'], {
      ...base,
      PGSHELF_HTTP_HOST: '0.0.0.0',
      PGSHELF_HTTP_PORT: String(port),
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('PGSHELF_HTTP_HOST=0.0.0.0 is not a loopback address');
    expect(refused.stderr).toContain('PGSHELF_HTTP_TOKEN');

    const token = 'a-long-enough-test-token-1234';
    queues(base.PGSHELF_QUEUE_PREFIX!, defer);
    const served = await startServe(
      { ...base, PGSHELF_HTTP_HOST: '0.0.0.0', PGSHELF_HTTP_TOKEN: token },
      defer,
    );
    for (const route of ['metrics', 'readyz', 'api/status', '']) {
      const anonymous = await get(served, route);
      expect(anonymous.status, route).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/Basic realm="pgshelf".*Bearer/);
      expect(JSON.stringify(anonymous.body)).not.toContain(token);
      expect((await get(served, route, authHeader('wrong-token-of-some-length'))).status).toBe(401);
    }
    // A second serve on the same port says which setting to change.
    const taken = await runCli(['serve'], {
      ...base,
      PGSHELF_HTTP_HOST: '0.0.0.0',
      PGSHELF_HTTP_PORT: String(served.port),
      PGSHELF_HTTP_TOKEN: token,
    });
    expect(taken.code).toBe(2);
    expect(taken.stderr).toContain(`port ${served.port} is in use`);
    expect(taken.stderr).toContain('PGSHELF_HTTP_PORT');

    const health = await get(served, 'healthz');
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ ok: true, redis: { ok: true }, storage: { ok: true } });

    const bearer = await get(served, 'metrics', authHeader(token));
    expect(bearer.status).toBe(200);
    expect(parseMetrics(bearer.text).value('pgshelf_redis_up')).toBe(1);
    // Basic auth with the token as password (any user name): what a browser's prompt and Prometheus send.
    const basic = await get(served, 'readyz', {
      authorization: `Basic ${Buffer.from(`prometheus:${token}`).toString('base64')}`,
    });
    expect(basic.status).toBe(200);
    expect(basic.body).toMatchObject({ ok: true });
  });

  it('says 503 with the reason on /healthz and /readyz while Redis is down, 200 again when it is back; stops on SIGTERM', async () => {
    const redis = await privateRedis(defer);
    const base = { ...(await emptyStorage()), REDIS_URL: redis.url };
    const served = await startServe(base, defer);
    expect((await get(served, 'healthz')).status).toBe(200);
    await waitFor('/readyz', async () => (await get(served, 'readyz')).status === 200);

    await redis.stop();
    const down = await waitFor('/healthz to say 503', async () => {
      const r = await get(served, 'healthz');
      return r.status === 503 ? r : undefined;
    });
    const body = down.body as {
      ok: boolean;
      redis: { ok: boolean; error: string };
      storage: { ok: boolean };
    };
    expect(body.ok).toBe(false);
    expect(body.redis.ok).toBe(false);
    expect(body.redis.error).toContain(`Redis at ${redis.url}`);
    expect(body.redis.error).toContain('REDIS_URL');
    expect(body.storage).toEqual({ ok: true });
    const ready = await get(served, 'readyz');
    expect(ready.status).toBe(503);
    expect((ready.body as { reasons: string[] }).reasons.join(' ')).toContain(`Redis at ${redis.url}`);
    // The metrics still answer, from storage, and say Redis is down.
    const m = await scrape(served.url);
    expect(m.value('pgshelf_redis_up')).toBe(0);
    expect(m.value('pgshelf_storage_up')).toBe(1);

    await redis.start();
    await waitFor('/healthz to say 200 again', async () => (await get(served, 'healthz')).status === 200);

    served.cli.child.kill('SIGTERM');
    const exit = await served.cli.done;
    expect(exit.code).toBe(0);
    expect(exit.stderr).toContain('shutting down gracefully');
  });

  it('with Redis unreachable from the start, /metrics leaves out the worker and job counts instead of saying 0', async () => {
    const closed = await freePort();
    const served = await startServe(
      { ...(await emptyStorage()), REDIS_URL: `redis://127.0.0.1:${closed}` },
      defer,
    );
    await waitFor('a status report', async () => (await get(served, 'api/status')).status === 200);
    const m = await scrape(served.url);
    expect(m.value('pgshelf_redis_up')).toBe(0);
    expect(m.value('pgshelf_storage_up')).toBe(1);
    // Unknown is not zero: `pgshelf_workers == 0` would page "no worker" for a Redis outage.
    expect(m.value('pgshelf_workers')).toBeUndefined();
    expect(m.value('pgshelf_jobs', { queue: 'backup', state: 'waiting' })).toBeUndefined();
  });

  it('says 503 naming the storage on /healthz while S3 does not answer; /metrics says pgshelf_storage_up 0', async () => {
    const s3 = await privateS3rver(defer);
    const bucket = await createBucket(s3.endpoint);
    const env: Env = { ...s3Env(bucket, 'pg', s3.endpoint), PGSHELF_QUEUE_PREFIX: uniquePrefix() };
    const served = await startServe(env, defer);
    await waitFor('/readyz', async () => (await get(served, 'readyz')).status === 200);

    await s3.stop();
    const down = await waitFor('/healthz to say 503', async () => {
      const r = await get(served, 'healthz');
      return r.status === 503 ? r : undefined;
    });
    const body = down.body as { redis: { ok: boolean }; storage: { ok: boolean; error: string } };
    expect(body.redis).toEqual({ ok: true });
    expect(body.storage.ok).toBe(false);
    expect(body.storage.error).toContain(`storage s3://${bucket}/pg`);
    expect(body.storage.error).toContain('PGSHELF_STORAGE');
    const m = await scrape(served.url);
    expect(m.value('pgshelf_storage_up')).toBe(0);
    expect(m.value('pgshelf_redis_up')).toBe(1);

    await s3.start();
    await waitFor(
      '/healthz to say 200 again',
      async () => (await get(served, 'healthz')).status === 200,
      60_000,
    );
  });

  it('`serve --help` and `status --help` print their own help', async () => {
    const serve = await runCli(['serve', '--help'], {});
    expect(serve.code).toBe(0);
    expect(serve.stdout).toContain('Usage: pgshelf serve');
    expect(serve.stdout).toContain('PGSHELF_HTTP_TOKEN');
    const status = await runCli(['status', '--help'], {});
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('Usage: pgshelf status');
    expect(status.stdout).toContain('--json');
  });
});
