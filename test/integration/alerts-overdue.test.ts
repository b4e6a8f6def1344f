/**
 * The watchdog: `backup.overdue` from the scheduler when no worker runs at all, exactly once per (database,
 * missed slot) across replicas and checks, and `backup.recovered` once a backup lands.
 */
import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { startAlerts } from '../../src/alerts/index.js';
import { lastSuccessAt } from '../../src/catalog/backups.js';
import { loadConfig, type Env } from '../../src/config/index.js';
import { silentLogger } from '../../src/logger.js';
import { overdueState } from '../../src/scheduler/overdue.js';
import { startWatchdog } from '../../src/scheduler/watchdog.js';
import { createStorage } from '../../src/storage/index.js';
import { waitFor } from '../helpers/cli.js';
import { baseEnv, pgEnv, tempDir, uniquePrefix } from '../helpers/env.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { daemon, queues, useCleanup } from '../helpers/lifecycle.js';
import { createDatabase, createSampleSchema, dropDatabase, uniqueName } from '../helpers/pg.js';
import { scrape } from '../helpers/metrics.js';
import { startReceiver } from '../helpers/receiver.js';
import { startServe } from '../helpers/serve.js';

const defer = useCleanup();

/** Once a year, on 1 January at midnight: the latest slot is long past, and the next one months away. */
const YEARLY = '0 0 1 1 *';

interface Body {
  event: string;
  database: string;
  job: { id: string; kind: string } | null;
  slot?: { local: string; at: string; timezone: string };
  lastSuccess?: string | null;
  text: string;
}

async function setup(webhook: string, extra: Env = {}) {
  const db = uniqueName();
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const prefix = uniquePrefix();
  const queue = queues(prefix, defer); // also removes the prefix's keys (alert state, claims) after the test
  const env: Env = {
    ...baseEnv(),
    ...pgEnv(db),
    PGSHELF_STORAGE: dir,
    PGSHELF_QUEUE_PREFIX: prefix,
    PGSHELF_SCHEDULE: YEARLY,
    PGSHELF_OVERDUE_GRACE: '0',
    PGSHELF_CATCH_UP: 'off',
    PGSHELF_WEBHOOK_URL: webhook,
    ...extra,
  };
  return { db, dir, env, queue };
}

describe('watchdog', () => {
  it('two schedulers and no worker, past a slot + grace: exactly one backup.overdue, naming the slot, and /metrics says 1; the first success of a worker is backup.recovered', async () => {
    const hook = await startReceiver(defer);
    const { db, env, queue } = await setup(`${hook.url}/hook`, { PGSHELF_LOG_LEVEL: 'debug' });
    const a = daemon('scheduler', env, defer);
    const b = daemon('scheduler', env, defer);
    // Each replica has checked (and tried to claim the alert) at least once.
    await waitFor(
      'both watchdogs to check',
      () => a.stderr().includes('"watchdog check"') && b.stderr().includes('"watchdog check"'),
      60_000,
    );
    await waitFor('backup.overdue', () => hook.received.length >= 1);
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    expect((await a.done).code).toBe(0);
    expect((await b.done).code).toBe(0);

    const bodies = hook.json<Body>('/hook');
    expect(bodies.map((x) => x.event)).toEqual(['backup.overdue']);
    const year = new Date().getUTCFullYear();
    expect(bodies[0]).toMatchObject({
      database: db,
      job: null,
      slot: { local: `${year}-01-01T00:00:00`, at: `${year}-01-01T00:00:00.000Z`, timezone: 'UTC' },
      lastSuccess: null,
    });
    expect(bodies[0]!.text).toContain(`backup of "${db}" is overdue`);
    // The one rule agrees: this database is overdue for that slot.
    const state = overdueState({
      schedule: YEARLY,
      timezone: 'UTC',
      graceMs: 0,
      lastSuccess: undefined,
      now: new Date(),
    });
    expect(state.missedSlot?.local).toBe(bodies[0]!.slot!.local);
    // The alert is logged by the replica that raised it, and only there.
    const lines = (a.stderr() + b.stderr()).split('\n').filter((l) => l.includes('"alert":"backup.overdue"'));
    expect(lines).toHaveLength(1);

    // /metrics says the same, from its own reading of the storage.
    const served = await startServe(env, defer);
    const metrics = await scrape(served.url);
    expect(metrics.value('pgshelf_backup_overdue', { database: db })).toBe(1);

    // A worker comes, and its first success clears the overdue database: backup.recovered, with its job.
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    await createSampleSchema(db, 20);
    const w = daemon('worker', env, defer);
    await waitFor('the worker', () => w.stderr().includes('worker started'), 60_000);
    const job = await queue('backup').add('backup', { database: db }, { attempts: 1 });
    await waitFor('backup.recovered', () => hook.received.length >= 2, 60_000);
    w.child.kill('SIGTERM');
    expect((await w.done).code).toBe(0);
    expect(hook.json<Body>('/hook').map((x) => x.event)).toEqual(['backup.overdue', 'backup.recovered']);
    expect(hook.json<Body>('/hook')[1]).toMatchObject({ database: db, job: { id: job.id, kind: 'backup' } });
  });

  it('checks every 50 ms alert once; a backup made without any worker clears it with backup.recovered', async () => {
    const hook = await startReceiver(defer);
    const { db, env } = await setup(`${hook.url}/hook`);
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    await createSampleSchema(db, 20);
    const config = loadConfig(env);
    const storage = createStorage(config.storage);
    const alerts = startAlerts({ config, logger: silentLogger(), delivery: { backoffMs: 50 } });
    // recheckMs 0: an overdue database is read again at every check.
    const watchdog = startWatchdog({
      config,
      storage,
      logger: silentLogger(),
      alerts,
      everyMs: 50,
      recheckMs: 0,
    });
    defer(async () => {
      await watchdog.stop();
      await alerts.close(500);
    });

    await waitFor('10 checks', () => watchdog.checks() >= 10);
    await waitFor('backup.overdue', () => hook.received.length >= 1);
    expect(hook.json<Body>('/hook').map((x) => x.event)).toEqual(['backup.overdue']);

    // A backup run in-process (no worker, no job events): the watchdog sees it in storage.
    const result = await jobs(env).backup({ database: db }, ctx());
    // What the watchdog reads: the attempt marker once it records the success, the manifest just before.
    const marked = await lastSuccessAt(storage, db, { atLeast: new Date(0) });
    const committed = await lastSuccessAt(storage, db);
    expect(committed!.getTime()).toBeGreaterThanOrEqual(
      Date.parse(`${new Date().getUTCFullYear()}-01-01T00:00:00Z`),
    );
    await waitFor('backup.recovered', () => hook.received.length >= 2);
    const at = watchdog.checks();
    await waitFor('10 more checks', () => watchdog.checks() >= at + 10);
    const bodies = hook.json<Body>('/hook');
    expect(bodies.map((x) => x.event)).toEqual(['backup.overdue', 'backup.recovered']);
    expect(bodies[1]).toMatchObject({ database: db, job: null, finishedAt: expect.any(String) as string });
    const finished = Date.parse((bodies[1] as unknown as { finishedAt: string }).finishedAt);
    expect([marked!.getTime(), committed!.getTime()]).toContain(finished);
    expect(result.database).toBe(db);
  });
});
