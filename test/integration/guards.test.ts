import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { waitFor } from '../helpers/cli.js';
import { daemon, sampleDatabase, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { lockTable, withClient } from '../helpers/pg.js';

const defer = useCleanup();
const worker = (env: Env) => daemon('worker', env, defer);

const database = (): Promise<string> => sampleDatabase(defer, 20);

/** pg_dump sessions of pgshelf now running against `databases`. */
async function dumpsRunning(databases: string[]): Promise<number> {
  return withClient('postgres', async (c) => {
    const r = await c.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgshelf' AND datname = ANY($1)
       AND query ILIKE '%LOCK TABLE%'`,
      [databases],
    );
    return (r.rows[0] as { n: number }).n;
  });
}

async function archives(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.sql.gz'));
}

describe('backup guards', () => {
  it('runs one dump of a database at a time: the second waits, then runs; each is followed by a prune', async () => {
    const { db, env, dir, queue } = await workerFixture(defer, {
      rows: 20,
      env: { PGSHELF_CONCURRENCY: '2' },
    });
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const w = worker(env);
    await waitFor('the worker', () => w.stderr().includes('worker started'));
    const backups = queue('backup');
    await backups.add('backup', { database: db });
    await backups.add('backup', { database: db });
    await waitFor('the second backup to wait', () =>
      w.stderr().includes('another backup of this database is running: waiting'),
    );
    // The first job takes the guard before pg_dump connects: wait for its dump, then check it is the only one.
    await waitFor('the first dump', async () => (await dumpsRunning([db])) >= 1);
    expect(await dumpsRunning([db])).toBe(1);
    await lock.release();
    await waitFor('both backups', async () => (await backups.getCompletedCount()) === 2, 60_000);
    expect(await archives(dir)).toHaveLength(2);
    await waitFor('the prunes', async () => (await queue('prune').getCompletedCount()) === 2, 30_000);
    const [prune] = await queue('prune').getCompleted();
    expect((prune!.returnvalue as { database: string; keep: string[] }).database).toBe(db);
  });

  it('runs at most PGSHELF_HOST_CONCURRENCY dumps against one server', async () => {
    const fixture = await workerFixture(defer, {
      rows: 20,
      env: { PGSHELF_CONCURRENCY: '2', PGSHELF_HOST_CONCURRENCY: '1' },
    });
    const { db: a, dir, queue } = fixture;
    const b = await database();
    // A worker runs only the databases it knows: its POSTGRES_DB (a) and those its PGSHELF_CONFIG lists (b).
    const config = path.join(dir, 'databases.yaml');
    await writeFile(config, `databases:\n  - name: ${b}\n`);
    const env: Env = { ...fixture.env, PGSHELF_CONFIG: config };
    const locks = [await lockTable(a, 'app.orders'), await lockTable(b, 'app.orders')];
    defer(async () => {
      for (const l of locks) await l.release();
    });
    const w = worker(env);
    await waitFor('the worker', () => w.stderr().includes('worker started'));
    const backups = queue('backup');
    await backups.add('backup', { database: a });
    await backups.add('backup', { database: b });
    await waitFor('a backup to wait for the server', () =>
      w.stderr().includes('the server already runs 1 dumps: waiting'),
    );
    await waitFor('the first dump', async () => (await dumpsRunning([a, b])) >= 1);
    expect(await dumpsRunning([a, b])).toBe(1);
    for (const l of locks) await l.release();
    await waitFor('both backups', async () => (await backups.getCompletedCount()) === 2, 60_000);
    expect(await archives(dir)).toHaveLength(2);
  });
});
