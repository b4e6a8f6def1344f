import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { RestoreFailedError, TargetExistsError } from '../../src/errors.js';
import { createBackupJob } from '../../src/jobs/backup.js';
import { restoreNonce } from '../../src/jobs/restore.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { waitFor } from '../helpers/cli.js';
import { pgEnv, tempDir, testConfig } from '../helpers/env.js';
import { useCleanup } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  snapshotDatabase,
  uniqueName,
  withClient,
} from '../helpers/pg.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { stagingFor } from '../helpers/restore.js';

const defer = useCleanup();

async function fixture(rows = 200): Promise<{ source: string; env: Env; dir: string; archive: string }> {
  const source = uniqueName();
  await createDatabase(source);
  defer(() => dropDatabase(source), { keepOnFailure: true });
  await createSampleSchema(source, rows);
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const env = { ...pgEnv(source), PGSHELF_STORAGE: dir };
  const config = testConfig(env);
  const backup = await createBackupJob({
    config,
    storage: createStorage(config.storage),
    logger: silentLogger(),
  })({}, ctx());
  return { source, env, dir, archive: backup.archiveLocation };
}

describe('restore identity', () => {
  it('a reused job id does not make an existing target look restored; the same nonce does', async () => {
    const f = await fixture();
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const first = restoreNonce();
    await jobs(f.env).restore({ into, nonce: first }, ctx({ jobId: '1' }));
    await withClient(into, (c) => c.query(`INSERT INTO app.users (email) VALUES ('after@restore')`));
    const before = await snapshotDatabase(into);
    // The queue was obliterated and its ids start again at 1: another restore, same job id, same target.
    await expect(jobs(f.env).restore({ into, nonce: restoreNonce() }, ctx({ jobId: '1' }))).rejects.toThrow(
      TargetExistsError,
    );
    await expect(jobs(f.env).restore({ into }, ctx({ jobId: '1' }))).rejects.toThrow(TargetExistsError);
    // A retry of the first restore (its nonce) finds it done and changes nothing.
    const again = await jobs(f.env).restore({ into, nonce: first }, ctx({ jobId: '1' }));
    expect(again.uncompressedBytes).toBe(0);
    expect(await snapshotDatabase(into)).toEqual(before);
    expect(await stagingFor(into)).toEqual([]);
  });

  it('two restores into one target at once: one wins, the other fails clearly, neither drops the other', async () => {
    const f = await fixture(3000);
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const job = jobs(f.env).restore;
    const results = await Promise.allSettled([job({ into }, ctx()), job({ into }, ctx())]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(TargetExistsError);
    expect((lost[0]!.reason as Error).message).toMatch(/another restore finished first|already exists/);
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(f.source));
    expect(await stagingFor(into)).toEqual([]);
  });
});

describe('two attempts of one restore', () => {
  it('running at once (a worker that lost its lock, and its retry): both end done, one database, no staging left', async () => {
    const f = await fixture(3000);
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const job = jobs(f.env).restore;
    const nonce = restoreNonce();
    const first = job({ into, nonce }, ctx({ jobId: '5' }));
    // The retry starts while the first attempt's psql is loading (a retry comes after the lock expired).
    await waitFor('the first attempt to be loading', () =>
      withClient('postgres', async (c) => {
        const r = await c.query(
          `SELECT 1 FROM pg_stat_activity a JOIN pg_database d ON d.datname = a.datname
           WHERE shobj_description(d.oid, 'pg_database') LIKE $1`,
          [`%into ${into}`],
        );
        return (r.rowCount ?? 0) > 0;
      }),
    );
    const results = await Promise.allSettled([first, job({ into, nonce }, ctx({ jobId: '5' }))]);
    expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : r.status))).toEqual([
      'fulfilled',
      'fulfilled',
    ]);
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(f.source));
    expect(await stagingFor(into)).toEqual([]);
  });
});

describe("psql's end", () => {
  it('a restore whose psql backend is terminated mid-stream fails promptly and drops its staging database', async () => {
    const f = await fixture(20_000);
    // psql stops in the middle, with megabytes of the archive still to come: the pipeline waits for 'drain'.
    const sql = gunzipSync(await readFile(f.archive)).toString('utf8');
    const at = sql.indexOf('COPY app.orders');
    await writeFile(
      path.join(f.dir, 'slow.sql.gz'),
      gzipSync(sql.slice(0, at) + 'SELECT pg_sleep(600);\n' + sql.slice(at)),
    );
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    // Should the restore hang, its sleeping staging database goes with the test.
    defer(async () => {
      for (const name of await stagingFor(into)) await dropDatabase(name);
    });
    let outcome: { error: unknown } | undefined;
    void jobs(f.env)
      .restore({ into, key: 'slow.sql.gz' }, ctx())
      .then(
        () => (outcome = { error: undefined }),
        (error: unknown) => (outcome = { error }),
      );
    // psql's backend on this restore's staging database, once it is loading data.
    const pid = await waitFor(
      "psql's backend",
      () =>
        withClient('postgres', async (c) => {
          const r = await c.query<{ pid: number }>(
            `SELECT a.pid FROM pg_stat_activity a JOIN pg_database d ON d.datname = a.datname
             WHERE shobj_description(d.oid, 'pg_database') LIKE $1
               AND a.query LIKE '%pg_sleep%'`,
            [`%into ${into}`],
          );
          return r.rows[0]?.pid;
        }),
      60_000,
    );
    await withClient('postgres', (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
    await waitFor('the restore to end', () => outcome, 120_000);
    expect(outcome!.error).toBeInstanceOf(RestoreFailedError);
    expect((outcome!.error as Error).message).toMatch(/terminating connection|psql (exited|was killed)/);
    expect(await stagingFor(into)).toEqual([]);
    expect(
      await withClient(
        'postgres',
        async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [into])).rowCount,
      ),
    ).toBe(0);
  });
});
