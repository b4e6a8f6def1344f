/**
 * `backup --in-process` takes the same one-dump-per-database guard as workers: in Redis when it answers, else a
 * PostgreSQL advisory lock in the database. The second of two overlapping backups fails at once, saying why.
 */
import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { dumpIsWaiting, lockTable } from '../helpers/pg.js';
import { closedPort } from '../helpers/silent.js';

const defer = useCleanup();

async function archives(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.sql.gz'));
}

describe.each([
  ['Redis reachable', (): Promise<Env> => Promise.resolve({})],
  ['Redis unreachable', async (): Promise<Env> => ({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}` })],
])('two `backup --in-process` of one database at once (%s)', (_name, redisEnv) => {
  it('the second fails at once naming the database; the first completes; one archive', async () => {
    const { db, dir, env: base } = await workerFixture(defer, { rows: 10 });
    const env = { ...base, ...(await redisEnv()) };
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const first = startCli(['backup', '--in-process'], env);
    defer(async () => {
      if (first.child.exitCode === null) first.child.kill('SIGKILL');
      await first.done;
    });
    await waitFor('the first pg_dump to block on the lock', () => dumpIsWaiting(db));

    const second = await runCli(['backup', '--in-process'], env);
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain(`another backup of "${db}" is running`);
    expect(second.stderr).toMatch(/try again when it ends/);

    await lock.release();
    const res = await first.done;
    expect(res.code, res.stderr).toBe(0);
    expect(await archives(dir)).toHaveLength(1);

    // The guard is released with the first backup: a third one runs.
    const third = await runCli(['backup', '--in-process'], env);
    expect(third.code, third.stderr).toBe(0);
    expect(await archives(dir)).toHaveLength(2);
  });
});
