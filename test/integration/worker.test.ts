import { Queue } from 'bullmq';
import { readdir, readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { dumpIsWaiting, lockTable } from '../helpers/pg.js';

const defer = useCleanup();
const setup = () => workerFixture(defer);
const worker = (env: Env) => daemon('worker', env, defer);

async function archives(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.sql.gz'));
}

describe('pgshelf worker + pgshelf backup', () => {
  it('enqueues a backup, waits for the worker, prints where the archive is, exits 0', async () => {
    const { db, dir, env } = await setup();
    const w = worker(env);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));

    const res = await runCli(['backup', '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as {
      jobId: string;
      database: string;
      archiveLocation: string;
      sha256: string;
    };
    expect(out.database).toBe(db);
    expect(out.jobId).toMatch(/^\d+$/);
    expect((await readFile(out.archiveLocation)).length).toBeGreaterThan(0);

    const human = await runCli(['backup'], env);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^backup [0-9a-f]{8} of "pgshelf_t_[0-9a-f]+": .* 6 tables, \d+ rows/m);
    expect(human.stdout).toContain(`archive:  ${dir}/`);
    expect(await archives(dir)).toHaveLength(2);

    const list = await runCli(['list', '--json'], env);
    const listed = JSON.parse(list.stdout) as { backups: { id: string; status: string }[] };
    expect(listed.backups).toHaveLength(2);
    expect(listed.backups.every((b) => b.status === 'complete')).toBe(true);
  });

  it('fails a job for a missing database at once, with the reason, exit 1', async () => {
    const setting = await setup();
    // The worker knows the database (its POSTGRES_DB), which does not exist on the server.
    const env: Env = { ...setting.env, POSTGRES_DB: 'pgshelf_no_such_db' };
    const w = worker(env);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    const res = await runCli(['backup'], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/backup job \d+ failed: database "pgshelf_no_such_db" does not exist/);
    const q = new Queue('backup', {
      connection: { host: '127.0.0.1', port: 6379 },
      prefix: env.PGSHELF_QUEUE_PREFIX,
    });
    const [failed] = await q.getFailed();
    await q.close();
    // Unrecoverable: one attempt, no retries.
    expect(failed?.attemptsMade).toBe(1);
  });

  it('--no-wait prints the job id and returns; the worker still runs it', async () => {
    const { dir, env } = await setup();
    const res = await runCli(['backup', '--no-wait', '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    const { jobId, queued } = JSON.parse(res.stdout) as { jobId: string; queued: boolean };
    expect(queued).toBe(true);
    const q = new Queue('backup', {
      connection: { host: '127.0.0.1', port: 6379 },
      prefix: env.PGSHELF_QUEUE_PREFIX,
    });
    expect(await q.getJobState(jobId)).toBe('waiting');
    worker(env);
    await waitFor('the job to complete', async () => (await q.getJobState(jobId)) === 'completed');
    await q.close();
    expect(await archives(dir)).toHaveLength(1);
  });

  it('exits 2 with the setting named for bad settings and bad usage', async () => {
    const { env } = await setup();
    const bad = await runCli(['backup', '--in-process'], { ...env, PGSHELF_GZIP_LEVEL: '11' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/PGSHELF_GZIP_LEVEL="11" is invalid: expected a whole number from 1 to 9/);
    const usage = await runCli(['backup', '--bogus'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/unknown option '--bogus'/);
    const noRedis = await runCli(['backup'], { ...env, REDIS_URL: 'redis://127.0.0.1:1' });
    expect(noRedis.code).toBe(1);
    expect(noRedis.stderr).toMatch(
      /cannot reach Redis at redis:\/\/127\.0\.0\.1:1 \(.*ECONNREFUSED.*\): .*--in-process/,
    );
    const missing = await runCli(['backup', '--in-process'], { PGSHELF_STORAGE: env.PGSHELF_STORAGE });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no database given: pass --db NAME, or set POSTGRES_DB/);
  });
});

describe('worker shutdown', () => {
  it('on SIGTERM lets the running backup finish within the grace period, then exits 0', async () => {
    const { db, dir, env } = await setup();
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const w = worker({ ...env, PGSHELF_SHUTDOWN_GRACE: '60' });
    const cli = startCli(['backup'], env);
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    w.child.kill('SIGTERM');
    await waitFor('the worker to log its shutdown', () => w.stderr().includes('shutting down gracefully'));
    await lock.release();
    const [res, cliRes] = await Promise.all([w.done, cli.done]);
    expect(res.code, res.stderr).toBe(0);
    expect(cliRes.code, cliRes.stderr).toBe(0);
    expect(await archives(dir)).toHaveLength(1);
  });

  it('aborts the job when the grace period ends, cleans up, and the job is retried by the next worker', async () => {
    const { db, dir, env } = await setup();
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const w = worker({ ...env, PGSHELF_SHUTDOWN_GRACE: '1' });
    const cli = startCli(['backup'], env);
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    w.child.kill('SIGTERM');
    const res = await w.done;
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/grace period over: aborting running jobs/);
    // pg_dump is gone; its server session drops the lock wait when the cancel request reaches it.
    await waitFor('the dump to stop waiting', async () => !(await dumpIsWaiting(db)), 10_000);
    expect(
      (await readdir(dir, { recursive: true })).filter(
        (f) => /\.(gz|json|partial)$/.test(f) && !f.endsWith('.pgshelf-last-attempt.json'),
      ),
    ).toEqual([]);

    // The CLI is still waiting: a new worker picks the job up again and finishes it.
    await lock.release();
    worker(env);
    const cliRes = await cli.done;
    expect(cliRes.code, cliRes.stderr).toBe(0);
    expect(await archives(dir)).toHaveLength(1);
  });

  it('a second signal forces the exit at once and kills pg_dump', async () => {
    const { db, env } = await setup();
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const w = worker({ ...env, PGSHELF_SHUTDOWN_GRACE: '600' });
    const q = new Queue('backup', {
      connection: { host: '127.0.0.1', port: 6379 },
      prefix: env.PGSHELF_QUEUE_PREFIX,
    });
    await q.add('backup', {});
    await q.close();
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    w.child.kill('SIGTERM');
    await waitFor('the worker to log its shutdown', () => w.stderr().includes('shutting down gracefully'));
    w.child.kill('SIGTERM');
    const res = await w.done;
    expect(res.code).toBe(130);
    await waitFor('pg_dump to go away', async () => !(await dumpIsWaiting(db)), 10_000);
  });
});
