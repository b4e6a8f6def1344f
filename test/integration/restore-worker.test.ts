import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import {
  databaseExists,
  dropDatabase,
  PG_USER,
  snapshotDatabase,
  uniqueName,
  withClient,
} from '../helpers/pg.js';

const defer = useCleanup();
const setup = () => workerFixture(defer, { rows: 300, env: { PGSHELF_LOCK_DURATION: '3' } });
const worker = (env: Env) => daemon('worker', env, defer);

describe('pgshelf restore through a worker', () => {
  it('enqueues, shows progress, restores, and exits 0; an existing target exits 1 with the reason', async () => {
    const { db, env } = await setup();
    expect((await runCli(['backup', '--in-process'], env)).code).toBe(0);
    const w = worker(env);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const res = await runCli(['restore', '--into', into], env);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(
      new RegExp(`^restored backup [0-9a-f]{8} into "${into}" \\(owner ${PG_USER}\\)`),
    );
    expect(res.stdout).toContain('SHA-256 matched the manifest');
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(db));

    const again = await runCli(['restore', '--into', into, '--json'], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`restore job \\d+ failed: database "${into}" already exists`));
    const usage = await runCli(['restore'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/required option '--into <name>' not specified/);
  });

  it('a worker killed midway: the job is run again by another worker, starts clean, and succeeds', async () => {
    const { db, dir, env } = await setup();
    const backup = await runCli(['backup', '--in-process', '--json'], env);
    const { archiveLocation } = JSON.parse(backup.stdout) as { archiveLocation: string };
    // An archive that stops halfway, in a long sleep while a role named `gate` exists (roles are shared by all
    // databases, so the test reaches into the staging database): "midway" on demand, for the first attempt only.
    // The sleep is found by the gate's unique name: other test files sleep in staging databases too.
    const gate = uniqueName('pgshelf_gate');
    await withClient('postgres', (c) => c.query(`CREATE ROLE ${gate} NOLOGIN`));
    defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${gate}`)));
    const sql = gunzipSync(await readFile(archiveLocation)).toString('utf8');
    const at = sql.indexOf('COPY app.orders');
    const sleep = `SELECT pg_sleep(600) FROM pg_catalog.pg_roles WHERE rolname = '${gate}';\n`;
    const slow = `${sql.slice(0, at)}${sleep}${sql.slice(at)}`;
    await writeFile(path.join(dir, 'slow.sql.gz'), gzipSync(slow));

    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const first = worker(env);
    const cli = startCli(['restore', '--key', 'slow.sql.gz', '--into', into], env);
    const blocked = (): Promise<boolean> =>
      withClient('postgres', async (c) => {
        const r = await c.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname LIKE 'pgshelf_restore_%' AND wait_event = 'PgSleep'
             AND query LIKE $1`,
          [`%pg_sleep(600)%${gate}%`],
        );
        return (r.rowCount ?? 0) > 0;
      });
    await waitFor('psql to sleep midway', blocked).catch((err: Error) => {
      throw new Error(`${err.message}\nworker: ${first.stderr()}\ncli: ${cli.stderr()}`);
    });
    first.child.kill('SIGKILL');
    await first.done;
    // The orphaned psql outlives its worker; once woken it stops on the error, leaving its staging database.
    await withClient('postgres', (c) => c.query(`DROP ROLE ${gate}`));
    await withClient('postgres', (c) =>
      c.query(
        `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
         WHERE datname LIKE 'pgshelf_restore_%' AND query LIKE $1`,
        [`%pg_sleep(600)%${gate}%`],
      ),
    );
    await waitFor('the orphaned psql to finish', async () => !(await blocked()));
    expect(await databaseExists(into)).toBe(false);

    const second = worker(env);
    const res = await cli.done;
    expect(res.code, `${res.stderr}\n${second.stderr()}`).toBe(0);
    expect(second.stderr()).toMatch(
      /dropped the unfinished restore left by an earlier attempt of this restore/,
    );
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(db));
    const leftovers = await withClient(
      'postgres',
      async (c) =>
        (
          await c.query<{ datname: string }>(
            `SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE $1`,
            [`%into ${into}`],
          )
        ).rows,
    );
    expect(leftovers).toEqual([]);
  });
});
