/**
 * Alerts from a worker's job events, delivered to real local HTTP receivers: backup.failed (signed), the
 * backup.recovered of the next success, prune.blocked, restore.succeeded/failed, healthchecks.io-style pings,
 * and receivers that fail or never answer, which must not touch the job.
 */
import type { Job } from 'bullmq';
import { createHmac } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CourierOptions } from '../../src/alerts/courier.js';
import { startAlerts, type Alerts } from '../../src/alerts/index.js';
import { loadConfig, type Env } from '../../src/config/index.js';
import type { BackupResult } from '../../src/jobs/backup.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { startWorker } from '../../src/worker/index.js';
import { waitFor } from '../helpers/cli.js';
import { baseEnv, pgEnv, tempDir, uniquePrefix } from '../helpers/env.js';
import { daemon, queues, useCleanup } from '../helpers/lifecycle.js';
import { createDatabase, createSampleSchema, dropDatabase, uniqueName } from '../helpers/pg.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { sha256File } from '../helpers/faults.js';

const defer = useCleanup();
type CourierTuning = Omit<CourierOptions, 'logger'>;
const SECRET = 'alert-secret-0123456789abcdef';

interface Body {
  event: string;
  database: string | null;
  job: { id: string; kind: string; attempt: number } | null;
  reason: string | null;
  occurredAt: string;
  startedAt?: string;
  finishedAt?: string;
  into?: string;
  text: string;
}

/** A database name (not created yet), a storage folder, a queue prefix, and the alert settings. */
async function setup(extra: Env = {}) {
  const db = uniqueName();
  defer(() => dropDatabase(db), { keepOnFailure: true });
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const prefix = uniquePrefix();
  const env: Env = {
    ...baseEnv(),
    ...pgEnv(db),
    PGSHELF_STORAGE: dir,
    PGSHELF_QUEUE_PREFIX: prefix,
    PGSHELF_RETRY_DELAY: '1',
    ...extra,
  };
  return { db, dir, env, queue: queues(prefix, defer) };
}

/** A worker in this process with alerts subscribed to its events; delivery retries are quick. */
async function worker(
  env: Env,
  delivery: CourierTuning = { timeoutMs: 2000, tries: 3, backoffMs: 100 },
): Promise<Alerts> {
  const config = loadConfig(env);
  const storage = createStorage(config.storage);
  const logger = silentLogger();
  const w = startWorker({ config, storage, logger });
  const alerts = startAlerts({ config, logger, delivery, host: 'test-host' });
  alerts.watch(w.events);
  defer(async () => {
    await w.close(1000);
    await alerts.close(500);
    await storage.close();
  });
  await w.ready;
  return alerts;
}

async function settled(job: Job): Promise<string> {
  return waitFor(
    `job ${job.id} to end`,
    async () => {
      const state = await job.getState();
      return state === 'completed' || state === 'failed' ? state : undefined;
    },
    60_000,
  );
}

const events = (r: Receiver): string[] => r.json<Body>('/hook').map((b) => b.event);

describe('alerts from job events', () => {
  it('a failing backup delivers a signed backup.failed, prune.blocked follows; the next success delivers backup.recovered; restores say how they ended; pings go start/fail/start/success', async () => {
    const hook = await startReceiver(defer);
    const ping = await startReceiver(defer);
    const { db, env, queue } = await setup({
      PGSHELF_WEBHOOK_URL: `${hook.url}/hook`,
      PGSHELF_WEBHOOK_SECRET: SECRET,
      PGSHELF_PING_URL: `${ping.url}/ping/0f1e2d3c?x=1`,
    });
    await worker(env);

    // 1. The database does not exist yet: the backup fails.
    const failing = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    expect(await settled(failing)).toBe('failed');
    await waitFor('backup.failed', () => events(hook).includes('backup.failed'));
    const delivery = hook.received.find((r) => r.headers['x-pgshelf-event'] === 'backup.failed')!;
    const expected = createHmac('sha256', SECRET).update(delivery.raw).digest('hex');
    expect(delivery.headers['x-pgshelf-signature']).toBe(`sha256=${expected}`);
    expect(delivery.headers['content-type']).toBe('application/json');
    const failed = JSON.parse(delivery.body) as Body;
    expect(failed).toMatchObject({
      event: 'backup.failed',
      database: db,
      job: { id: failing.id, kind: 'backup', attempt: 1 },
      host: 'test-host',
    });
    expect(failed.reason).toMatch(/does not exist/);
    expect(failed.text).toContain(`backup of "${db}" failed`);
    expect(Date.parse(failed.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(failed.startedAt!));

    // 2. Prune after a failed attempt deletes nothing, and says so.
    const prune = await queue('prune').add('prune', { database: db });
    expect(await settled(prune)).toBe('completed');
    await waitFor('prune.blocked', () => events(hook).includes('prune.blocked'));
    const blocked = hook.json<Body>('/hook').find((b) => b.event === 'prune.blocked')!;
    expect(blocked.reason).toMatch(/latest backup attempt failed/);

    // 3. The database appears: the next backup succeeds, and is the recovery.
    await createDatabase(db);
    await createSampleSchema(db, 50);
    const good = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    expect(await settled(good)).toBe('completed');
    await waitFor('backup.recovered', () => events(hook).includes('backup.recovered'));
    const recovered = hook.json<Body>('/hook').find((b) => b.event === 'backup.recovered')!;
    expect(recovered).toMatchObject({ database: db, job: { id: good.id, kind: 'backup' }, reason: null });

    // 4. A second success is no recovery.
    const again = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    expect(await settled(again)).toBe('completed');

    // 5. Restores: one into a new database, one into an existing one.
    const into = uniqueName();
    defer(() => dropDatabase(into));
    const restored = await queue('restore').add('restore', { database: db, into });
    expect(await settled(restored)).toBe('completed');
    const refused = await queue('restore').add('restore', { database: db, into: db }, { attempts: 1 });
    expect(await settled(refused)).toBe('failed');
    await waitFor('restore.failed', () => events(hook).includes('restore.failed'));
    const bodies = hook.json<Body>('/hook');
    expect(bodies.find((b) => b.event === 'restore.succeeded')).toMatchObject({ database: db, into });
    expect(bodies.find((b) => b.event === 'restore.failed')?.reason).toMatch(/already exists/);

    // Each event once, in order; every body signed.
    expect(events(hook)).toEqual([
      'backup.failed',
      'prune.blocked',
      'backup.recovered',
      'restore.succeeded',
      'restore.failed',
    ]);
    for (const r of hook.received) {
      const mac = createHmac('sha256', SECRET).update(r.raw).digest('hex');
      expect(r.headers['x-pgshelf-signature']).toBe(`sha256=${mac}`);
    }
    // healthchecks.io style: /start, /fail with the reason, then /start and the URL itself, per backup.
    await waitFor('the last ping', () => ping.received.length >= 6);
    expect(ping.received.map((r) => r.path)).toEqual([
      '/ping/0f1e2d3c/start?x=1',
      '/ping/0f1e2d3c/fail?x=1',
      '/ping/0f1e2d3c/start?x=1',
      '/ping/0f1e2d3c?x=1',
      '/ping/0f1e2d3c/start?x=1',
      '/ping/0f1e2d3c?x=1',
    ]);
    expect(ping.received[1]!.body).toMatch(/does not exist/);
  });

  it('a receiver answering 500 and one that never answers: the backup succeeds, unhurried; the 500 is retried, then given up', async () => {
    const failing = await startReceiver(defer, 500);
    const silent = await startReceiver(defer, 'hang');
    const { db, dir, env, queue } = await setup({
      PGSHELF_WEBHOOK_URL: `${failing.url}/hook`,
      PGSHELF_PING_URL: `${silent.url}/ping`,
    });
    // The silent receiver's requests would time out only after a minute; its lane holds 4 of them at once.
    const alerts = await worker(env, { timeoutMs: 60_000, tries: 3, backoffMs: 50, concurrency: 4 });

    // A failure first (no database yet), so that the success is a recovery the 500 receiver is told about.
    const first = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    expect(await settled(first)).toBe('failed');
    await createDatabase(db);
    await createSampleSchema(db, 50);
    await waitFor('the failure alert to be tried 3 times', () => failing.received.length >= 3);

    const job = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    await waitFor('the start ping of the second backup', () => silent.received.length >= 3);
    expect(await settled(job)).toBe('completed');
    // The job is done while its start ping (and the first backup's start and fail) still wait for an answer.
    // (its success ping may have arrived too, and waits all the same).
    expect(silent.open()).toBeGreaterThanOrEqual(3);
    expect(silent.open()).toBe(silent.received.length);
    const result = (await queue('backup').getJob(job.id!))!.returnvalue as BackupResult;
    expect(result.durationMs).toBeLessThan(60_000);
    expect(await sha256File(path.join(dir, result.archiveKey))).toBe(result.sha256);
    expect(JSON.parse(await readFile(path.join(dir, result.manifestKey), 'utf8'))).toMatchObject({
      id: result.id,
    });

    // The recovery goes to the failing receiver 3 times, then is given up (logged), never retried again.
    await waitFor(
      'backup.recovered tried 3 times',
      () => events(failing).filter((e) => e === 'backup.recovered').length >= 3,
    );
    await waitFor('both deliveries to be given up', () => alerts.stats().failed >= 2);
    expect(events(failing)).toEqual([
      ...Array<string>(3).fill('backup.failed'),
      ...Array<string>(3).fill('backup.recovered'),
    ]);
  });

  it('a drill of a damaged archive delivers drill.failed with the reason', async () => {
    const hook = await startReceiver(defer);
    const { db, dir, env, queue } = await setup({ PGSHELF_WEBHOOK_URL: `${hook.url}/hook` });
    await createDatabase(db);
    await createSampleSchema(db, 50);
    await worker(env);
    const backup = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    expect(await settled(backup)).toBe('completed');
    const { archiveKey } = (await queue('backup').getJob(backup.id!))!.returnvalue as BackupResult;
    // Same size, one byte changed in the middle of the gzip stream.
    const file = path.join(dir, archiveKey);
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await writeFile(file, bytes);

    const drill = await queue('drill').add('drill', { database: db }, { attempts: 1 });
    expect(await settled(drill)).toBe('failed');
    await waitFor('drill.failed', () => events(hook).includes('drill.failed'));
    const body = hook.json<Body>('/hook').find((b) => b.event === 'drill.failed')!;
    expect(body).toMatchObject({ database: db, job: { id: drill.id, kind: 'drill', attempt: 1 } });
    // gunzip or the file's SHA-256, whichever stage of the one pipeline speaks first: both name the damage. Which
    // words zlib uses depends on what the flipped byte was (the dump, and so the compressed stream, differs every
    // run): "incorrect data check", "invalid distance too far back" (seen in CI), "invalid block type", ...
    expect(body.reason).toMatch(
      /restore drill of backup .* failed: restore failed: .*(cannot be decompressed \([a-z ]+\): it is truncated or damaged|does not match its manifest: SHA-256)/,
    );
    expect(events(hook)).toEqual(['drill.failed']);
  });

  it('pgshelf worker sends them: a failing backup queued to the worker process is a signed backup.failed, delivered even when SIGTERM follows at once', async () => {
    const hook = await startReceiver(defer);
    const { db, env, queue } = await setup({
      PGSHELF_WEBHOOK_URL: `${hook.url}/hook`,
      PGSHELF_WEBHOOK_SECRET: SECRET,
      PGSHELF_LOG_LEVEL: 'info',
    });
    const w = daemon('worker', env, defer);
    await waitFor('the worker', () => w.stderr().includes('worker started'), 60_000);
    const job = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    expect(await settled(job)).toBe('failed');
    // Stopped at once: an alert not sent yet goes out during the shutdown.
    w.child.kill('SIGTERM');
    expect((await w.done).code).toBe(0);
    expect(hook.received).toHaveLength(1);
    const [r] = hook.received;
    expect(r!.headers['x-pgshelf-signature']).toBe(
      `sha256=${createHmac('sha256', SECRET).update(r!.raw).digest('hex')}`,
    );
    expect(JSON.parse(r!.body)).toMatchObject({ event: 'backup.failed', database: db, job: { id: job.id } });
    // Logged as an alert too, at warn.
    expect(w.stderr()).toMatch(/"level":40[^\n]*"alert":"backup.failed"/);
  });
});
