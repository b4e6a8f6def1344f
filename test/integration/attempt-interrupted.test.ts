/**
 * A worker SIGKILLed mid-backup records no outcome: its attempt marker keeps saying "running". The status (and so
 * /metrics, the dashboard and `pgshelf status`) must read it as "interrupted" once the job's BullMQ lock has
 * expired, and, when Redis cannot be asked, once the marker's heartbeat has stopped.
 */
import { describe, expect, it } from 'vitest';
import { collectStatus, type StatusReport } from '../../src/monitor/index.js';
import { createStorage } from '../../src/storage/index.js';
import { runCli, waitFor } from '../helpers/cli.js';
import { Session, startServe, textOf } from '../helpers/dashboard.js';
import { testConfig } from '../helpers/env.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { scrape } from '../helpers/metrics.js';
import { dumpIsWaiting, lockTable } from '../helpers/pg.js';

const defer = useCleanup();

describe('a worker killed mid-backup', () => {
  it('leaves a "running" marker that reads as interrupted once its job lock expires, or its heartbeat stops', async () => {
    // A job whose worker died loses its lock after PGSHELF_LOCK_DURATION seconds (6: a stall of the busy test machine shorter than half of it does not read as a dead worker).
    const { db, env } = await workerFixture(defer, { env: { PGSHELF_LOCK_DURATION: '6' } });
    // pg_dump blocks on this lock: the backup is running (marker written, pg_dump connected) when the worker dies.
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const worker = daemon('worker', env, defer);
    const queued = await runCli(['backup', '--no-wait', '--json'], env);
    expect(queued.code, queued.stderr).toBe(0);
    const { jobId } = JSON.parse(queued.stdout) as { jobId: string };
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));

    const serve = await startServe(env, defer);
    expect((await scrape(serve.url)).value('pgshelf_backup_running', { database: db })).toBe(1);

    worker.child.kill('SIGKILL');
    await worker.done;

    // Read through BullMQ: the job is still "active" (no other worker found it stalled), but its lock is gone.
    const scraped = await waitFor(
      'pgshelf_backup_running to drop to 0',
      async () => {
        const m = await scrape(serve.url);
        return m.value('pgshelf_backup_running', { database: db }) === 0 ? m : undefined;
      },
      30_000,
    );
    expect(scraped.value('pgshelf_backup_last_status', { database: db })).toBe(0);
    const api = JSON.parse((await new Session(serve.url).get('/api/status')).body) as StatusReport;
    const status = api.databases.find((d) => d.name === db)!;
    expect(status.lastAttempt?.status).toBe('interrupted');
    expect(status.lastAttempt?.job).toBe(`${env['PGSHELF_QUEUE_PREFIX']}:backup:${jobId}`);
    expect(status.failing).toBe(true);
    expect(status.problems.join('\n')).toMatch(/latest backup attempt was interrupted/);
    const backups = serve.monitor.queues.get('backup')!;
    expect(await backups.getJobState(jobId)).toBe('active');

    const home = await new Session(serve.url).get('/');
    const row = new RegExp(`<tr data-database="${db}">([\\s\\S]*?)</tr>`).exec(home.body)![1]!;
    expect(textOf(row)).toContain('interrupted');
    expect(textOf(row)).not.toContain('running');

    // Without Redis (`pgshelf status` when it does not answer): the marker's heartbeat stopped with the worker.
    const config = testConfig(env);
    const storage = createStorage(config.storage);
    defer(() => storage.close());
    const alone = await waitFor('the heartbeat to go stale', async () => {
      const r = await collectStatus({ config, storage });
      const a = r.databases.find((d) => d.name === db)!.lastAttempt;
      return a?.status === 'interrupted' ? a : undefined;
    });
    expect(alone.id).toBe(status.lastAttempt!.id);
    const cli = await runCli(['status', '--json'], env);
    expect(cli.code).toBe(1);
    const printed = JSON.parse(cli.stdout) as StatusReport;
    expect(printed.databases.find((d) => d.name === db)!.lastAttempt?.status).toBe('interrupted');
  }, 120_000);
});
