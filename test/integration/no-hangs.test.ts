/**
 * Nothing hangs without end: an S3 endpoint that accepts connections and never answers ends a command with a
 * clear error within the S3 timeouts, and a first SIGTERM or SIGINT ends an in-process job, even while it waits
 * on such an endpoint, leaving nothing behind.
 */
import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import type { StatusReport } from '../../src/monitor/index.js';
import { startCli, waitFor, type CliResult, type RunningCli } from '../helpers/cli.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { dumpIsWaiting, lockTable, withClient } from '../helpers/pg.js';
import { silentServer, type SilentServer } from '../helpers/silent.js';

const defer = useCleanup();

async function silentS3(): Promise<SilentServer> {
  const server = await silentServer();
  defer(() => server.close());
  return server;
}

function s3On(server: SilentServer, extra: Env = {}): Env {
  return {
    PGSHELF_STORAGE: 's3://silent-bucket/backups',
    S3_ENDPOINT: server.url,
    S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    ...extra,
  };
}

/** A CLI run, killed after the test if still running; `ended` waits generously for it to end on its own. */
function run(args: string[], env: Env): RunningCli & { ended(what: string): Promise<CliResult> } {
  const cli = startCli(args, env);
  let result: CliResult | undefined;
  void cli.done.then((r) => (result = r));
  defer(async () => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
    await cli.done;
  });
  return { ...cli, ended: (what) => waitFor(what, () => result, 90_000) };
}

/** pgshelf's own sessions (pg_dump) still connected to `database`. */
async function sessions(database: string): Promise<number> {
  return withClient('postgres', async (c) => {
    const r = await c.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgshelf'`,
      [database],
    );
    return (r.rows[0] as { n: number }).n;
  });
}

/** Archives, manifests and temp files in a storage folder (the attempt marker is not a backup). */
async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter(
    (f) => /\.(gz|json|partial)$/.test(f) && !f.endsWith('.pgshelf-last-attempt.json'),
  );
}

const fast = { PGSHELF_S3_CONNECT_TIMEOUT: '1', PGSHELF_S3_REQUEST_TIMEOUT: '1' };

describe('a silent S3 endpoint', () => {
  it('`list` ends with an error naming S3_ENDPOINT and the timeout setting', async () => {
    const server = await silentS3();
    const { env } = await workerFixture(defer, { rows: 10 });
    const cli = run(['list'], { ...env, ...s3On(server, fast) });
    const res = await cli.ended('list to end');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`S3_ENDPOINT=${server.url}`);
    expect(res.stderr).toMatch(/PGSHELF_S3_REQUEST_TIMEOUT=1/);
    expect(server.connections()).toBeGreaterThan(0);
  });

  it('`backup --in-process` ends with that error and leaves no pg_dump running', async () => {
    const server = await silentS3();
    const { db, env } = await workerFixture(defer, { rows: 10 });
    const cli = run(['backup', '--in-process'], { ...env, ...s3On(server, fast) });
    const res = await cli.ended('the backup to end');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`S3_ENDPOINT=${server.url}`);
    expect(res.stderr).toMatch(/PGSHELF_S3_(REQUEST|CONNECT)_TIMEOUT=1/);
    expect(await sessions(db)).toBe(0);
  });
});

describe('a Redis that accepts connections and never answers', () => {
  it('`backup --in-process` goes on without it, `status` reports without it, `backup` says so and exits 1', async () => {
    // The Redis check's connect timeout ends at the TCP connection: these three used to wait for ever.
    const { db, dir, env } = await workerFixture(defer, { rows: 10 });
    const redis = await silentServer();
    defer(() => redis.close());
    const silent = { ...env, REDIS_URL: `redis://127.0.0.1:${redis.port}` };

    const here = await run(['backup', '--in-process', '--json'], silent).ended('the in-process backup');
    expect(here.code, here.stderr).toBe(0);
    const backedUp = JSON.parse(here.stdout) as { ok: boolean; id: string; database: string };
    expect(backedUp).toMatchObject({ ok: true, database: db });
    expect((await leftovers(dir)).filter((f) => f.endsWith('.sql.gz'))).toHaveLength(1);

    const status = await run(['status', '--json'], silent).ended('status');
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as StatusReport;
    expect(report.databases.map((d) => [d.name, d.lastSuccess?.id])).toEqual([[db, backedUp.id]]);
    expect(report.queues.ok).toBe(false);

    const queued = await run(['backup'], silent).ended('the queued backup');
    expect(queued.code).toBe(1);
    expect(queued.stderr).toMatch(
      /cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+ \(no answer within 5000 ms\): start Redis or fix REDIS_URL/,
    );
    expect(redis.connections()).toBeGreaterThanOrEqual(3);
  });
});

describe('a first signal ends an in-process job', () => {
  it('SIGTERM while the backup waits on a silent S3 endpoint: exit 143, pg_dump gone', async () => {
    const server = await silentS3();
    const { db, env } = await workerFixture(defer, { rows: 10 });
    // Long S3 timeouts: it is the signal, not a timeout, that must end the command.
    const cli = run(['backup', '--in-process'], {
      ...env,
      ...s3On(server, { PGSHELF_S3_CONNECT_TIMEOUT: '600', PGSHELF_S3_REQUEST_TIMEOUT: '600' }),
      PGSHELF_SHUTDOWN_GRACE: '2',
    });
    await waitFor('the backup to reach S3', () => server.connections() > 0);
    cli.child.kill('SIGTERM');
    const res = await cli.ended('the backup to end after SIGTERM');
    expect(res.code, res.stderr).toBe(143);
    expect(res.stderr).toMatch(/SIGTERM/);
    await waitFor('pg_dump to go away', async () => (await sessions(db)) === 0, 10_000);
  });

  it('SIGINT while pg_dump waits on a lock: exit 130, pg_dump killed, no archive, manifest or .partial', async () => {
    const { db, dir, env } = await workerFixture(defer, { rows: 10 });
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const cli = run(['backup', '--in-process'], { ...env, PGSHELF_SHUTDOWN_GRACE: '2' });
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    cli.child.kill('SIGINT');
    const res = await cli.ended('the backup to end after SIGINT');
    expect(res.code, res.stderr).toBe(130);
    await waitFor('pg_dump to go away', async () => (await sessions(db)) === 0, 10_000);
    expect(await leftovers(dir)).toEqual([]);
  });

  it('a signal while the guard asks a Redis that never answers: exit 130/143, nothing dumped', async () => {
    // The guard asks Redis first (2 s at most). The handler used to be installed only after the guard: a signal
    // in that wait met the default disposition (killed, exit null), and one right after the guard's lease was
    // taken left the lease to expire.
    const { db, dir, env } = await workerFixture(defer, { rows: 10 });
    const redis = await silentServer();
    defer(() => redis.close());
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const before = redis.connections();
      const cli = run(['backup', '--in-process', '--json'], {
        ...env,
        REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      });
      await waitFor('the guard to ask the silent Redis', () => redis.connections() > before);
      cli.child.kill(signal);
      const res = await cli.ended(`the backup to end after ${signal}`);
      expect({ code: res.code, signal: res.signal }, res.stderr).toEqual({
        code: signal === 'SIGINT' ? 130 : 143,
        signal: null,
      });
      expect(res.stdout, res.stderr).not.toBe('');
      expect(JSON.parse(res.stdout)).toMatchObject({ ok: false });
      expect(res.stderr).toContain(`backup interrupted by ${signal}`);
      expect(await sessions(db)).toBe(0);
      expect(await leftovers(dir)).toEqual([]);
    }
  });
});

describe('a worker forced to stop by a second SIGTERM', () => {
  it('exits 130 and leaves no .partial file, archive or manifest in the folder', async () => {
    const { db, dir, env } = await workerFixture(defer, { rows: 10 });
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const w = daemon('worker', { ...env, PGSHELF_SHUTDOWN_GRACE: '600' }, defer);
    const cli = run(['backup', '--no-wait'], env);
    expect((await cli.ended('the job to be queued')).code).toBe(0);
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    // pg_dump has started, so gzip has written its header into the temp file.
    expect((await readdir(dir, { recursive: true })).some((f) => f.endsWith('.partial'))).toBe(true);
    w.child.kill('SIGTERM');
    await waitFor('the worker to log its shutdown', () => w.stderr().includes('shutting down gracefully'));
    w.child.kill('SIGTERM');
    const res = await w.done;
    expect(res.code, res.stderr).toBe(130);
    expect(await leftovers(dir)).toEqual([]);
    await waitFor('pg_dump to go away', async () => (await sessions(db)) === 0, 10_000);
  });
});

describe('a worker whose job is stuck on a silent S3 endpoint', () => {
  it('still exits after SIGTERM: the grace, then a bounded wait for the aborted job, then a forced exit', async () => {
    const server = await silentS3();
    const { db, env } = await workerFixture(defer, { rows: 10 });
    const settings = {
      ...env,
      ...s3On(server, { PGSHELF_S3_CONNECT_TIMEOUT: '600', PGSHELF_S3_REQUEST_TIMEOUT: '600' }),
      PGSHELF_SHUTDOWN_GRACE: '1',
    };
    const w = daemon('worker', settings, defer);
    expect((await run(['backup', '--no-wait'], settings).ended('the job to be queued')).code).toBe(0);
    await waitFor('the job to reach S3', () => server.connections() > 0);
    let ended: CliResult | undefined;
    void w.done.then((r) => (ended = r));
    w.child.kill('SIGTERM');
    const res = await waitFor('the worker to exit', () => ended, 90_000);
    expect(res.signal).toBe(null);
    expect(res.code, res.stderr).toBe(130);
    expect(res.stderr).toMatch(/shutdown did not finish in time/);
    await waitFor('pg_dump to go away', async () => (await sessions(db)) === 0, 10_000);
  });
});
