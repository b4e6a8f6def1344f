/** A waiting command and its job: Ctrl-C, retries a retry cannot fix, and whose retry delay applies. */
import { Queue } from 'bullmq';
import { readdir } from 'node:fs/promises';
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
    expect(res.code, res.stderr).toBe(130);
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
    expect(jres.code, jres.stderr).toBe(143);
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
