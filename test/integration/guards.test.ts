import { Queue } from 'bullmq';
import { readdir, rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { Env } from '../../src/config.js';
import { startCli, waitFor, type RunningCli } from '../helpers/cli.js';
import { pgEnv, tempDir, uniquePrefix } from '../helpers/env.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  lockTable,
  uniqueName,
  withClient,
} from '../helpers/pg.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const connection = { host: '127.0.0.1', port: 6379 };

async function database(): Promise<string> {
  const db = uniqueName();
  await createDatabase(db);
  cleanup.push(() => dropDatabase(db));
  await createSampleSchema(db, 20);
  return db;
}

async function setup(
  db: string,
  extra: Env,
): Promise<{ env: Env; dir: string; queue: (n: string) => Queue }> {
  const dir = await tempDir();
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const prefix = uniquePrefix();
  const queues: Queue[] = [];
  cleanup.push(async () => {
    for (const q of queues) {
      await q.obliterate({ force: true });
      await q.close();
    }
  });
  return {
    env: {
      ...pgEnv(db),
      PGSHELF_STORAGE: dir,
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_LOG_LEVEL: 'info',
      ...extra,
    },
    dir,
    queue: (name) => {
      const q = new Queue(name, { connection, prefix });
      queues.push(q);
      return q;
    },
  };
}

function worker(env: Env): RunningCli {
  const w = startCli(['worker'], env);
  cleanup.push(async () => {
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await w.done;
  });
  return w;
}

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
    const db = await database();
    const { env, dir, queue } = await setup(db, { PGSHELF_CONCURRENCY: '2' });
    const lock = await lockTable(db, 'app.orders');
    cleanup.push(() => lock.release());
    const w = worker(env);
    await waitFor('the worker', () => w.stderr().includes('worker started'));
    const backups = queue('backup');
    await backups.add('backup', { database: db });
    await backups.add('backup', { database: db });
    await waitFor('the second backup to wait', () =>
      w.stderr().includes('another backup of this database is running: waiting'),
    );
    expect(await dumpsRunning([db])).toBe(1);
    await lock.release();
    await waitFor('both backups', async () => (await backups.getCompletedCount()) === 2, 60_000);
    expect(await archives(dir)).toHaveLength(2);
    await waitFor('the prunes', async () => (await queue('prune').getCompletedCount()) === 2, 30_000);
    const [prune] = await queue('prune').getCompleted();
    expect((prune!.returnvalue as { database: string; keep: string[] }).database).toBe(db);
  });

  it('runs at most PGSHELF_HOST_CONCURRENCY dumps against one server', async () => {
    const [a, b] = [await database(), await database()];
    const { env, dir, queue } = await setup(a, { PGSHELF_CONCURRENCY: '2', PGSHELF_HOST_CONCURRENCY: '1' });
    const locks = [await lockTable(a, 'app.orders'), await lockTable(b, 'app.orders')];
    cleanup.push(async () => {
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
    expect(await dumpsRunning([a, b])).toBe(1);
    for (const l of locks) await l.release();
    await waitFor('both backups', async () => (await backups.getCompletedCount()) === 2, 60_000);
    expect(await archives(dir)).toHaveLength(2);
  });
});
