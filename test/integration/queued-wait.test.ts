/** A waiting command and its job: Ctrl-C, retries a retry cannot fix, and whose retry delay applies. */
import { Queue, QueueEvents } from 'bullmq';
import { readdir } from 'node:fs/promises';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { startCli, runCli, waitFor } from '../helpers/cli.js';
import { s3Env } from '../helpers/env.js';
import { daemon, redis, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { dumpIsWaiting, lockTable } from '../helpers/pg.js';

const defer = useCleanup();

function backupQueue(env: Env): Queue {
  const q = new Queue('backup', { connection: redis, prefix: env.PGSHELF_QUEUE_PREFIX });
  defer(() => q.close());
  return q;
}

describe('Ctrl-C on a waiting command', () => {
  it('removes a job no worker has started, and exits 130', async () => {
    const { dir, env } = await workerFixture(defer);
    const q = backupQueue(env);
    const cli = startCli(['backup'], env);
    await waitFor('the command to wait', () => cli.stderr().includes('no worker is running'));
    expect(await q.getJobState('1')).toBe('waiting');
    cli.child.kill('SIGINT');
    const res = await cli.done;
    expect({ code: res.code, signal: res.signal }, res.stderr).toEqual({ code: 130, signal: null });
    expect(res.stderr).toContain(
      'interrupted: removed backup job 1 from the queue (waiting); no worker had started it',
    );
    expect(await q.getJob('1')).toBeUndefined();
    expect(await q.getJobCounts()).toMatchObject({ waiting: 0, delayed: 0, active: 0, prioritized: 0 });
    // SIGTERM does the same (exit 143), and --json says so as a document.
    const json = startCli(['backup', '--json'], env);
    await waitFor('the command to wait', () => json.stderr().includes('no worker is running'));
    json.child.kill('SIGTERM');
    const jres = await json.done;
    expect({ code: jres.code, signal: jres.signal }, jres.stderr).toEqual({ code: 143, signal: null });
    expect(JSON.parse(jres.stdout)).toMatchObject({
      ok: false,
      error: { name: 'Interrupted', exitCode: 143 },
    });
    expect(await q.getJobCounts()).toMatchObject({ waiting: 0, delayed: 0, active: 0, prioritized: 0 });
    // A worker started afterwards finds nothing to do.
    const w = daemon('worker', env, defer);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    expect(await readdir(dir)).toEqual([]);
  });

  it('a signal the moment the job is added still takes it off the queue (no window before the handler)', async () => {
    // CI once saw the process killed by SIGTERM (exit null) with the job left queued: the handler was installed
    // after the "no worker is running" line, and a signal sent on reading that line could land first.
    const { env } = await workerFixture(defer);
    const q = backupQueue(env);
    const events = new QueueEvents('backup', { connection: redis, prefix: env.PGSHELF_QUEUE_PREFIX });
    defer(() => events.close());
    await events.waitUntilReady();
    for (let round = 0; round < 6; round++) {
      const cli = startCli(['backup', '--json'], env);
      const signal = round % 2 ? 'SIGINT' : 'SIGTERM';
      const kill = (): void => void cli.child.kill(signal);
      events.once('added', kill);
      const res = await cli.done;
      events.off('added', kill);
      expect({ code: res.code, signal: res.signal }, res.stderr).toEqual({
        code: signal === 'SIGINT' ? 130 : 143,
        signal: null,
      });
      expect(JSON.parse(res.stdout)).toMatchObject({ ok: false, error: { name: 'Interrupted' } });
      expect(res.stderr).toMatch(
        /interrupted: removed backup job \d+ from the queue|before the backup job was queued/,
      );
    }
    expect(await q.getJobCounts()).toMatchObject({ waiting: 0, delayed: 0, active: 0, prioritized: 0 });
  });

  it('a signal while Redis does not answer, before anything is queued, ends the command at once', async () => {
    // A Redis that answers the command's first connection (its health check) and then goes silent: before this
    // test, the first Ctrl-C was only noted until the queue's connection came up, so it seemed to do nothing.
    const { env } = await workerFixture(defer);
    let connections = 0;
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      sockets.add(client);
      client.on('error', () => undefined);
      if (++connections > 1) return; // accepted, never answered
      const upstream = net.connect(6379, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('error', () => undefined);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    defer(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    });
    const port = (proxy.address() as net.AddressInfo).port;
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const cli = startCli(['backup', '--json'], { ...env, REDIS_URL: `redis://127.0.0.1:${port}` });
      const before = connections;
      await waitFor('the queue to connect to the silent Redis', () => connections >= before + 2);
      cli.child.kill(signal);
      const res = await cli.done;
      expect({ code: res.code, signal: res.signal }, res.stderr).toEqual({
        code: signal === 'SIGINT' ? 130 : 143,
        signal: null,
      });
      expect(res.stderr).toContain(
        `interrupted by ${signal} before the backup job was queued: nothing was queued`,
      );
      expect(JSON.parse(res.stdout)).toMatchObject({ ok: false, error: { name: 'Interrupted' } });
      connections = 0;
    }
  });

  it('says a running job goes on, exits 130, and the job still finishes', async () => {
    const { db, dir, env } = await workerFixture(defer);
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    daemon('worker', env, defer);
    const q = backupQueue(env);
    const cli = startCli(['backup'], env);
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    cli.child.kill('SIGINT');
    const res = await cli.done;
    expect(res.code, res.stderr).toBe(130);
    expect(res.stderr).toContain('interrupted: backup job 1 is running on a worker and goes on there');
    await lock.release();
    await waitFor('the job to complete', async () => (await q.getJobState('1')) === 'completed');
    expect((await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.sql.gz'))).toHaveLength(1);
  });
});

describe('a job whose worker stopped', () => {
  it('the waiting command says it starts again on another worker', async () => {
    const { db, env } = await workerFixture(defer, { env: { PGSHELF_LOCK_DURATION: '2' } });
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const first = daemon('worker', env, defer);
    const cli = startCli(['backup'], env);
    defer(async () => {
      if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
      await cli.done;
    });
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    first.child.kill('SIGKILL');
    await first.done;
    daemon('worker', env, defer);
    await waitFor('the command to report the restart', () =>
      cli
        .stderr()
        .includes('backup job 1: its worker stopped while running it; it starts again on another worker'),
    );
    const job = await backupQueue(env).getJob('1');
    expect(job?.attemptsMade).toBe(0); // a stall is not a failed attempt
  });
});

describe('retries', () => {
  it('a missing S3 bucket fails the job on its first attempt', async () => {
    const { env } = await workerFixture(defer, {
      env: { ...s3Env('pgshelf-no-such-bucket-4f1c'), PGSHELF_ATTEMPTS: '3' },
    });
    const w = daemon('worker', env, defer);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    const res = await runCli(['backup'], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/backup job 1 failed: S3 .*NoSuchBucket/);
    expect(res.stderr).not.toContain('attempt 2');
    const job = await backupQueue(env).getJob('1');
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toMatch(/NoSuchBucket/);
  });

  it("the worker's PGSHELF_RETRY_DELAY sets the retry delay, and the command shows each attempt", async () => {
    const { env } = await workerFixture(defer);
    // The worker cannot reach PostgreSQL (nothing listens on port 1): a failure a retry might fix.
    const w = daemon('worker', { ...env, POSTGRES_PORT: '1', PGSHELF_RETRY_DELAY: '1' }, defer);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    // The command leaves PGSHELF_RETRY_DELAY at its default of 30 s.
    const res = await runCli(['backup'], { ...env, PGSHELF_RETRY_DELAY: '', PGSHELF_ATTEMPTS: '2' });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^backup job 1: attempt 2 of 2 after: .+$/m);
    const job = await backupQueue(env).getJob('1');
    expect(job?.attemptsMade).toBe(2);
    // Both attempts, and the 1 s wait between them, well inside the 30 s the command's default would have set.
    expect((job?.finishedOn ?? Infinity) - (job?.timestamp ?? 0)).toBeLessThan(20_000);
  });
});
